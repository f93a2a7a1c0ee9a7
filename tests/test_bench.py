"""The benchmark command runs end to end (quick mode): it must not rot. No figure is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localhub.browser import CHROMIUM
from localhub.podman import Podman
from tests.conftest import require_tool, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
BERDL_VARIANTS = {"new home", "prepared home"}
BASELINES = {"plain", "chown"}


def run_quick(output: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`bench/run.py --quick ARGS` and the JSON it wrote, after checking that it exited 0."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            *args,
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "written to" in result.stdout
    document = json.loads(output.read_text())
    assert document["quick"] is True
    for figure in document["figures"]:
        assert figure["value"] > 0, figure
        assert isinstance(figure["met"], bool)
        assert figure["name"] in result.stdout  # in the table
    return result, document


@pytest.mark.slow
def test_the_benchmark_runs_in_quick_mode_and_writes_every_figure(tmp_path: Path) -> None:
    require_tool("strace")

    # The time to JupyterLab needs the whole stack: the next test runs it.
    _, document = run_quick(tmp_path / "figures.json", "--parts", "berdl-init", "spawner")

    names = [figure["name"] for figure in document["figures"]]
    assert len(names) == 9, names
    assert any(name.startswith("warm run, wall median") for name in names)
    assert any(name.startswith("file-system calls under the home") for name in names)


@pytest.mark.slow
def test_the_time_to_jupyterlab_bench_times_and_splits_each_variant(podman: Podman, tmp_path: Path) -> None:
    """On the images the session's `podman` fixture built (--reuse-images: none built again)."""
    for tool in ("node", "runuser"):
        require_tool(tool)
    if not CHROMIUM.exists():
        skip_or_fail("Debian's chromium is not installed (scripts/setup installs it)")

    _, document = run_quick(tmp_path / "figures.json", "--parts", "ttl", "--reuse-images")

    names = [figure["name"] for figure in document["figures"]]
    assert len(names) == 3, names
    assert all(name.startswith("time to JupyterLab, ") for name in names), names
    starts = document["time_to_lab_starts"]
    assert sorted(start["variant"] for start in starts) == sorted(BERDL_VARIANTS | BASELINES)
    for start in starts:
        parts = [start[part] for part in ("hub", "node", "init", "notebook", "browser")]
        assert min(parts) >= 0, start  # the clocks of the browser, the API and podman agree
        assert start["browser"] < start["notebook"], start
        # berdl-init ran in BERDL's pods only; the root hook's chown -R in the chown baseline only.
        assert (start["init"] > 0) == (start["variant"] in BERDL_VARIANTS), start
        assert (start["chown"] is not None and start["chown"] > 0) == (start["variant"] == "chown"), start
