"""Running berdl-init as root for an unprivileged user (uid and gid 1000), as the initContainer does."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import NoReturn

import pytest

import berdl_init

UID = GID = 1000


def skip_or_fail(message: str) -> NoReturn:
    """Skip on a laptop; under CI=true a test that cannot run is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def pythonpath() -> str:
    """Where this berdl_init and its dependencies are, for an interpreter other than the one running."""
    repo = Path(berdl_init.__file__).resolve().parent.parent
    return os.pathsep.join([str(repo), sysconfig.get_paths()["purelib"]])


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
            result = subprocess.run(
                [candidate, "-c", probe],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": pythonpath()},
                cwd="/",
                user=UID,
                group=GID,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except OSError:  # uid 1000 cannot even execute it
            continue
        if result.returncode == 0 and result.stdout.strip() == version:
            return Path(candidate)
    skip_or_fail(f"no Python {version} interpreter that uid {UID} can read (tried {candidates})")
