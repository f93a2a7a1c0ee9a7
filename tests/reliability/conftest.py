"""Helpers for the reliability suites: real processes on a real disk, as root.

Every run is `python -m berdl_init --json` in a child process with a clean environment; the home and
everything around it are compared as trees of (type, mode, owner, bytes or link target).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.environment import child_env
from tests.rootrun import GID, UID, find_user_python, pythonpath, skip_or_fail, traversable_base  # noqa: F401

USER = "alice"
VENV_REL = f".virtualenvs/envs/{USER}_default_env"
FAVORITES_REL = ".jupyter/lab/user-settings/@jlab-enhanced/favorites/favorites.jupyterlab-settings"
LEDGER_REL = ".local/state/berdl-init/ledger.json"
#: A bound against a hung child; no test asserts on time.
TIMEOUT = 300
HERE = Path(__file__).parent
KILLER = HERE / "killer.py"


@pytest.fixture
def as_root() -> None:
    """For the suites that start berdl-init as root (pytestmark = pytest.mark.usefixtures("as_root"))."""
    if os.geteuid() != 0:
        skip_or_fail("the reliability suites run berdl-init as root (os.geteuid() != 0 here)")


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


def berdl(
    home: Path | None,
    scratch: Path,
    *args: str,
    status: int | None = 0,
    python: Path | str = sys.executable,
    launcher: list[str] | None = None,
    user: int | None = None,
    **settings: str,
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run berdl-init --json on `home`; check the exit status (unless None); its JSON and the run.

    Runs as root with BERDL_UID=BERDL_GID=0 unless settings say otherwise (a setting of None: unset).
    Without a home, no --home is given.
    """
    settings = {"BERDL_UID": "0", "BERDL_GID": "0", **settings}
    settings = {key: value for key, value in settings.items() if value is not None}
    env = child_env(scratch, **{"BERDL_USER": USER, **settings})
    if python != sys.executable:
        env["PYTHONPATH"] = pythonpath()
    where = [] if home is None else ["--home", str(home)]
    command = [str(python), *(launcher or ["-m", "berdl_init"]), *where, "--json", *args]
    extra: dict[str, Any] = {}
    if user is not None:
        extra = {"user": user, "group": user, "extra_groups": []}
    result = subprocess.run(
        command, env=env, cwd="/", capture_output=True, text=True, timeout=TIMEOUT, check=False, **extra
    )
    if status is not None:
        assert result.returncode == status, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    try:
        out = json.loads(result.stdout) if result.stdout.strip() else {}
    except ValueError:
        out = {}
    return out, result


@pytest.fixture(scope="session")
def user_python() -> Path:
    return find_user_python()


@pytest.fixture
def shared_base() -> Iterator[Path]:
    with traversable_base("berdl-rel-") as path:
        yield path


# -- trees -------------------------------------------------------------------------------------------

_ASIDE = re.compile(r"\.berdl-old-\d{8}T\d{6}(-\d+)?")
#: The same in file contents (a rebuilt venv's restore files name the old venv).
_ASIDE_BYTES = re.compile(_ASIDE.pattern.encode())


def tree(root: Path, *, home: Path | None = None, times: bool = False) -> dict[str, tuple[Any, ...]]:
    """Everything under `root` (root included, as "."), symlinks not followed.

    Each entry: (type, mode, uid, gid, sha256 of the bytes or the link target[, mtime_ns, ctime_ns]).
    With `home`, that path is replaced by "<HOME>" in bytes and link targets, and the time stamps of
    moved-aside venvs by "*" (in names and bytes), so homes at different paths or made at different times
    compare equal.
    """
    entries: dict[str, tuple[Any, ...]] = {}
    if not os.path.lexists(root):
        return entries
    paths = [root]
    if root.is_dir() and not root.is_symlink():
        paths += sorted(root.rglob("*"))
    for path in paths:
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        content: str = ""
        if stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
            if home is not None:
                data = _ASIDE_BYTES.sub(b".berdl-old-*", data.replace(str(home).encode(), b"<HOME>"))
            content = hashlib.sha256(data).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
            if home is not None:
                content = content.replace(str(home), "<HOME>")
        if home is not None:
            rel = _ASIDE.sub(".berdl-old-*", rel)
        entry: tuple[Any, ...] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            content,
        )
        if times:
            entry += (st.st_mtime_ns, st.st_ctime_ns)
        entries[rel] = entry
    return entries


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two trees, one line per path (empty when equal)."""
    lines = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            lines.append(f"{key}: {before.get(key)} -> {after.get(key)}")
    return lines


def step_status(report: dict[str, Any], name: str) -> str:
    return next(step["status"] for step in report["steps"] if step["name"] == name)
