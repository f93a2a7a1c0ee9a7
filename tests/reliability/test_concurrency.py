"""Concurrency: several berdl-init runs on one home at once (two named servers starting together) end with
the home one run makes. Real processes on a real disk, the venv step included."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.environment import child_env
from tests.reliability.conftest import TIMEOUT, USER, VENV_REL, berdl, diff, tree

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("as_root")]


def changes(report: dict) -> list[tuple[str, str, str]]:
    return [(c["step"], c["action"], c["path"]) for c in report["changes"]]


def prepare(home: Path, scratch: Path, start: str) -> None:
    """The home the runs start from: none, or a prepared one whose dotfiles and venv must be redone."""
    if start == "cold":
        return
    berdl(home, scratch)
    (home / ".bashrc").write_bytes(b"")  # unknown to the ledger now: the user's, kept, a conflict
    (home / ".bash_profile").unlink()
    cfg = home / VENV_REL / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace("version_info = ", "version_info = 1."))


@pytest.mark.parametrize("runs", [2, 8])
@pytest.mark.parametrize("start", ["cold", "update"])
def test_runs_at_once_make_the_home_one_run_makes(
    tmp_path: Path, scratch: Path, runs: int, start: str
) -> None:
    home = tmp_path / "home"
    prepare(home, scratch, start)
    env = child_env(scratch, BERDL_USER=USER, BERDL_UID="0", BERDL_GID="0")
    command = [sys.executable, "-m", "berdl_init", "--home", str(home), "--json"]
    children = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(runs)
    ]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=TIMEOUT)
        assert child.returncode == 0, err
        reports.append(json.loads(out))
    assert all(report["ok"] for report in reports), [r["steps"] for r in reports]
    together = tree(home, home=home)
    made = Counter(change for report in reports for change in changes(report) if change[0] != "home")
    homes = [change for report in reports for change in changes(report) if change[0] == "home"]
    assert set(homes) <= {("home", "mkdir", ".")}  # each run that found no home says it made it

    # The same start, one run, at the same path.
    home.rename(tmp_path / "together")
    prepare(home, scratch, start)
    alone, _ = berdl(home, scratch)
    assert made == Counter(change for change in changes(alone) if change[0] != "home")
    assert diff(together, tree(home, home=home)) == []
    again, _ = berdl(home, scratch)
    assert again["changes"] == []
