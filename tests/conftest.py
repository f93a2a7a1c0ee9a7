"""Shared test helpers."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """Path of an external tool a test needs.

    On a laptop without it the test is skipped; under CI (CI=true) a missing tool is a failure,
    because `.ci/run` installs everything the suite needs.
    """
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (scripts/setup installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
