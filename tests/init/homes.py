"""Helpers for tests that prepare homes on pyfakefs: a fake home, running the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from berdl_init.cli import main
from berdl_init.settings import PACKAGED_TEMPLATES

HOME = Path("/home/alice")
FAVORITES_FILE = HOME / ".jupyter/lab/user-settings/@jlab-enhanced/favorites/favorites.jupyterlab-settings"
LEDGER_FILE = HOME / ".local/state/berdl-init/ledger.json"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    @property
    def changed_paths(self) -> list[str]:
        return [change["path"] for change in self.report["changes"]]


def berdl_init(*args: str) -> Result:
    """Run the real command line in-process (CliRunner), as berdl-init's main() would run."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def fake_home(fs: Any, env: pytest.MonkeyPatch) -> Path:
    """HOME on pyfakefs, with the packaged templates, and the settings of a user's run without the venv."""
    fs.add_real_directory(PACKAGED_TEMPLATES)
    fs.create_dir(HOME)
    env.setenv("HOME", str(HOME))
    env.setenv("BERDL_USER", "alice")
    env.setenv("BERDL_UID", str(os.getuid()))
    env.setenv("BERDL_GID", str(os.getgid()))
    env.setenv("BERDL_STEPS", "dirs,dotfiles,favorites")
    return HOME
