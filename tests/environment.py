"""What of the caller's environment a test lets through: nothing that would change what berdl-init,
virtualenv or pip do, nor the test's own knobs (`KILLER_`, tests/reliability/killer.py)."""

from __future__ import annotations

import os
from pathlib import Path

CALLERS_PREFIXES = ("BERDL_", "VIRTUALENV_", "PIP_", "PYTHON", "KILLER_")
CALLERS_NAMES = {"VIRTUAL_ENV", "JUPYTERHUB_USER", "NB_USER"}


def is_callers_setting(name: str) -> bool:
    return name.startswith(CALLERS_PREFIXES) or name in CALLERS_NAMES


def child_env(scratch: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process: the caller's, without its settings (above); TMPDIR in
    `scratch` (virtualenv's app data and pip's temporary files land there); pip quiet and offline about
    its own version; then `extra`."""
    env = {key: value for key, value in os.environ.items() if not is_callers_setting(key)}
    scratch.mkdir(exist_ok=True)
    env.update(
        TMPDIR=str(scratch),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_ROOT_USER_ACTION="ignore",
    )
    env.update(extra)
    return env
