"""Running berdl-init as root for an unprivileged user (uid and gid 1000), as the initContainer does."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import berdl_init
from tests.conftest import skip_or_fail

UID = GID = 1000


def pythonpath() -> str:
    """Where this berdl_init and its dependencies are, for an interpreter other than the one running."""
    repo = Path(berdl_init.__file__).resolve().parent.parent
    return os.pathsep.join([str(repo), sysconfig.get_paths()["purelib"]])


def run_as_user(
    command: list[str], env: dict[str, str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `command` as uid and gid 1000 (no other group) from /, with a minimal environment."""
    return subprocess.run(
        command,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd="/",
        user=UID,
        group=GID,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@contextlib.contextmanager
def traversable_base(prefix: str) -> Iterator[Path]:
    """A root-owned 0755 folder under /var/tmp that every user can traverse, with a world-writable
    `tmp/` (the runs' TMPDIR, so virtualenv's scratch files go too); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    try:
        path.chmod(0o755)
        for parent in path.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                skip_or_fail(f"{parent} cannot be traversed by other users")
        (path / "tmp").mkdir()
        (path / "tmp").chmod(0o1777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def find_user_python() -> Path:
    """An interpreter of this Python version that uid 1000 can run berdl_init with.

    berdl-init drops from root to the user and goes on importing its modules: the interpreter and the
    code must be readable by uid 1000 (here /root, holding pyenv's Python, is not).
    """
    version = "%d.%d" % sys.version_info[:2]  # noqa: UP031 - compiled dependencies need the same version
    base = getattr(sys, "_base_executable", None) or sys.executable
    candidates = [sys.executable, base, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    probe = (
        "import pickle, jinja2, json5, virtualenv, berdl_init.cli, sys; print('%d.%d' % sys.version_info[:2])"
    )
    for candidate in dict.fromkeys(candidates):
        if not Path(candidate).is_file():
            continue
        try:
            result = run_as_user([candidate, "-c", probe], {"PYTHONPATH": pythonpath()}, check=False)
        except OSError:  # uid 1000 cannot even execute it
            continue
        if result.returncode == 0 and result.stdout.strip() == version:
            return Path(candidate)
    skip_or_fail(f"no Python {version} interpreter that uid {UID} can read (tried {candidates})")
