"""The benchmark command runs end to end (quick mode): it must not rot. No figure is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_benchmark_runs_in_quick_mode_and_writes_every_figure(tmp_path: Path) -> None:
    require_tool("strace")
    output = tmp_path / "figures.json"

    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    document = json.loads(output.read_text())
    assert document["quick"] is True
    names = [figure["name"] for figure in document["figures"]]
    assert len(names) == 9, names
    assert any(name.startswith("warm run, wall median") for name in names)
    assert any(name.startswith("file-system calls under the home") for name in names)
    for figure in document["figures"]:
        assert figure["value"] > 0, figure
        assert isinstance(figure["met"], bool)
    assert "written to" in result.stdout
