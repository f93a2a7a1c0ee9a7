"""The run's one-line summary in the termination-message file the kubelet reads (berdl_init.termination):
written for every outcome when the file exists, never created, never a reason for the run to fail."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from berdl_init import __version__, termination
from tests.init.homes import berdl_init


@pytest.fixture
def home(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """A real home (the file's open flags are the point, so no pyfakefs), with the file a kubelet makes."""
    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    clean_env.setenv("BERDL_HOME", str(home))
    clean_env.setenv("BERDL_USER", "alice")
    clean_env.setenv("BERDL_UID", str(os.getuid()))
    clean_env.setenv("BERDL_GID", str(os.getgid()))
    clean_env.setenv("BERDL_STEPS", "dirs,dotfiles,favorites")
    log = tmp_path / "termination-log"
    log.touch()
    log.chmod(0o666)  # as the kubelet makes it
    clean_env.setenv("BERDL_TERMINATION_LOG", str(log))
    return home


def summary_of(home: Path) -> dict[str, Any]:
    text = (home.parent.parent / "termination-log").read_text()
    assert "\n" not in text
    document: dict[str, Any] = json.loads(text)
    return document


def test_a_run_leaves_its_result_counts_and_time(home: Path) -> None:
    assert berdl_init().exit_code == 0
    first = summary_of(home)
    assert berdl_init().exit_code == 0
    second = summary_of(home)

    assert first["berdl_init"] == __version__
    assert (first["result"], first["exit_status"], first["failed_steps"]) == ("changed", 0, [])
    assert first["changes"] > 0
    assert first["warnings"] == 0
    assert isinstance(first["seconds"], float)
    assert (second["result"], second["changes"]) == ("unchanged", 0)
    assert "error" not in first
    # Counts and step names only: no home, no user name.
    assert str(home) not in json.dumps(first)
    assert "alice" not in json.dumps(first)


def test_warnings_make_the_result_warned(home: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BERDL_VENV_PYHTON", "/usr/bin/python3")  # a typo: warned about

    assert berdl_init().exit_code == 0

    assert (summary_of(home)["result"], summary_of(home)["warnings"]) == ("warned", 1)


def test_bad_settings_leave_the_line_berdl_init_printed(home: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BERDL_TEMPLATE_VARS", '{"user": "hunter2-s3cr3t"}')

    result = berdl_init()

    summary = summary_of(home)
    assert result.exit_code == 2
    assert (summary["result"], summary["exit_status"]) == ("failed", 2)
    assert f"berdl-init: {summary['error']}" == result.stderr.strip()
    assert "hunter2-s3cr3t" not in json.dumps(summary)


def test_a_failed_step_under_strict_names_it(home: Path) -> None:
    (home / ".jupyter").write_text("not a folder")

    lenient = berdl_init()
    summary = summary_of(home)
    assert lenient.exit_code == 0
    assert (summary["result"], summary["exit_status"], summary["failed_steps"]) == ("failed", 0, ["dirs"])

    assert berdl_init("--strict").exit_code == 3
    summary = summary_of(home)
    assert (summary["result"], summary["exit_status"], summary["failed_steps"]) == ("failed", 3, ["dirs"])
    assert summary["error"].startswith("dirs: ~/.jupyter is not a folder")


def test_a_home_that_cannot_be_used_is_a_failure_with_its_status(home: Path) -> None:
    home.rmdir()
    home.symlink_to(home.parent)

    assert berdl_init().exit_code == 3
    assert (summary_of(home)["result"], summary_of(home)["exit_status"]) == ("failed", 3)


@pytest.mark.parametrize("form", ["missing", "unset", "symlink", "fifo", "folder"])
def test_no_summary_file_or_an_odd_one_changes_nothing_else(
    home: Path, clean_env: pytest.MonkeyPatch, tmp_path: Path, form: str
) -> None:
    """Only an existing regular file is written: none is created, no link is followed, no FIFO waited on;
    the run's outcome is the same."""
    path = tmp_path / "elsewhere" / "termination-log"
    path.parent.mkdir()
    target = tmp_path / "target"
    target.write_text("untouched")
    if form == "symlink":
        path.symlink_to(target)
    elif form == "fifo":
        os.mkfifo(path)
    elif form == "folder":
        path.mkdir()
    clean_env.setenv("BERDL_TERMINATION_LOG", "" if form == "unset" else str(path))

    done = threading.Event()
    outcome: list[int] = []

    def run() -> None:
        outcome.append(berdl_init().exit_code)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(120), "berdl-init waits on the termination-log file"
    assert outcome == [0]
    assert (home / ".bashrc").is_file()
    assert target.read_text() == "untouched"
    assert sorted(p.name for p in path.parent.iterdir()) == (
        [] if form in ("missing", "unset") else [path.name]
    )


def test_a_long_error_is_cut_so_that_the_kubelet_keeps_a_whole_line() -> None:
    line = termination.summary(exit_status=2, seconds=0.1, error="x" * 10_000)

    assert len(line.encode()) <= termination.MAX_BYTES
    assert json.loads(line)["error"].endswith("...")
