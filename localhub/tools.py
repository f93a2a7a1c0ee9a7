"""Where the local stack finds the programs it runs, and what it says when one is missing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

#: The checkout: the hub's configuration, images/, node_modules/ and .work/ are found from here.
REPO = Path(__file__).resolve().parents[1]


class ToolMissing(RuntimeError):
    """A program the stack needs is not installed here; the message says what installs it."""


def find_tool(name: str) -> str:
    """Path of a program: `name` on PATH (or a path), or beside this interpreter (the venv's bin, where
    pip puts the programs of Python packages such as kubernetes-validate)."""
    beside = Path(sys.executable).parent / name
    path = shutil.which(str(beside) if beside.exists() else name)
    if path is None:
        raise ToolMissing(f"{name} is not installed (scripts/setup installs it)")
    return path


def is_root() -> bool:
    return os.geteuid() == 0
