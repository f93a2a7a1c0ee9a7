"""Building a virtualenv under a temporary name, ready to be renamed to its final one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: Files in which virtualenv writes the folder it builds in; they must name the final folder instead.
#: Besides these, every script in bin/ (the seeded pip's console scripts name the venv's python in their
#: shebang).
_PATH_BEARING_FILES = ("pyvenv.cfg", "bin/activate", "bin/activate_this.py")


#: The commands a venv with system site packages gets as launchers of the image's pip.
PIP_COMMANDS = ("pip", "pip3")


def pip_launcher() -> bytes:
    """`pip` for a venv with system site packages: the image's pip, run by the venv's python.

    `python -m pip` installs into the venv it runs in, so no copy of pip goes into every home.
    """
    return (
        b"#!/bin/sh\n"
        b"# Written by berdl-init: runs the image's pip with this virtualenv's python, which installs here.\n"
        b'exec "$(dirname -- "$0")/python" -m pip "$@"\n'
    )


def build_venv(build_dir: Path, final_dir: Path, python: Path, system_site_packages: bool) -> None:
    """Build a venv at `build_dir` that is correct once renamed to `final_dir`.

    With system site packages nothing is seeded (the image's pip serves, through a launcher); without,
    pip is seeded from the wheels virtualenv ships, never downloaded.
    """
    from virtualenv import cli_run

    options = [
        str(build_dir),
        "--python",
        str(python),
        # The venv's python must be a symlink to `python`: that is how a later run recognises the venv
        # as built on it (a copy would be moved aside and rebuilt on every run).
        "--symlinks",
        "--prompt",
        final_dir.name,
        "--activators",
        "bash,python",
        "--no-periodic-update",
        "--no-vcs-ignore",
        "--quiet",
    ]
    if system_site_packages:
        options += ["--system-site-packages", "--no-seed"]
    else:
        options += ["--no-download", "--no-setuptools"]

    # virtualenv caches interpreter facts and wheels in an app-data folder; keep it out of the home. An
    # image can prepare one when it is built (VIRTUALENV_OVERRIDE_APP_DATA): it is then only read, which
    # spares running the interpreter to learn about it, and suits a read-only root filesystem.
    app_data = os.environ.get("VIRTUALENV_OVERRIDE_APP_DATA")
    scratch = None if app_data else tempfile.mkdtemp(prefix="berdl-init-virtualenv-")
    if app_data:
        options += ["--app-data", app_data, "--read-only-app-data"]
    else:
        options += ["--app-data", str(scratch)]
    try:
        cli_run(options, setup_logging=False, env=_isolated_env())
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    _point_at(build_dir, final_dir)
    if system_site_packages:
        for command in PIP_COMMANDS:
            launcher = build_dir / "bin" / command
            launcher.write_bytes(pip_launcher())
            launcher.chmod(0o755)


def _isolated_env() -> dict[str, str]:
    """The environment for virtualenv without its VIRTUALENV_* settings and its user config file
    (~/.config/virtualenv/virtualenv.ini): the venv is what the options above say, whoever runs this."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUALENV_")}
    env["VIRTUALENV_CONFIG_FILE"] = os.devnull
    return env


def _point_at(build_dir: Path, final_dir: Path) -> None:
    old, new = str(build_dir).encode(), str(final_dir).encode()
    scripts = sorted(f"bin/{entry.name}" for entry in (build_dir / "bin").iterdir())
    for name in dict.fromkeys([*_PATH_BEARING_FILES, *scripts]):
        path = build_dir / name
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if old in data:
                path.write_bytes(data.replace(old, new))
