"""Shared test helpers."""

from __future__ import annotations

import os
from typing import Any, NoReturn

import jinja2  # noqa: F401
import json5  # noqa: F401
import pytest

# Imported before any pyfakefs test starts: a module first imported inside a fake file system keeps
# references to pyfakefs's classes (pydantic's validators capture pathlib.Path when a model is built).
import berdl_init.runner  # noqa: F401
from localhub.podman import Podman
from localhub.tools import ToolMissing, find_tool, is_root
from tests.environment import is_callers_setting

#: How long the slow podman steps took (tests/images/conftest.py prints them at the end).
PODMAN_SECONDS: dict[str, float] = {}


def skip_or_fail(message: str) -> NoReturn:
    """Skip on a laptop; under CI=true a test that cannot run is a failure (.ci/run installs everything)."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """Path of an external tool a test needs (localhub.tools.find_tool: on PATH or in the venv's bin).

    On a laptop without it the test is skipped; under CI (CI=true) a missing tool is a failure,
    because `.ci/run` installs everything the suite needs.
    """
    try:
        return find_tool(name)
    except ToolMissing as missing:
        skip_or_fail(str(missing))


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Any:
    """A program the local stack needs and this machine lacks (localhub raises ToolMissing, found
    while a fixture starts it) is require_tool's case: skipped on a laptop, a failure under CI=true."""
    try:
        return (yield)
    except ToolMissing as missing:
        skip_or_fail(str(missing))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """The same, for a program a test body starts."""
    try:
        return (yield)
    except ToolMissing as missing:
        skip_or_fail(str(missing))


def require_root() -> None:
    """Rootful podman with overlay storage (see images/podman) needs root; CI runs as root."""
    if is_root():
        return
    skip_or_fail("the image tests run podman as root (overlay storage, hostPath volumes)")


@pytest.fixture(scope="session")
def podman() -> Podman:
    """The project's podman, with localhost/berdl-init:test and localhost/berdl-notebook:test built,
    once per run for tests/images and tests/e2e alike.

    The first build of a machine makes the Debian base with debootstrap (its tarball is then cached in
    .work/images) and the stand-in image; later ones reuse podman's layer cache in .work/podman.
    """
    for tool in ("podman", "runc", "debootstrap"):
        require_tool(tool)
    require_root()
    podman = Podman(seconds=PODMAN_SECONDS)
    podman.build_images()
    return podman


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No BERDL_*, Jupyter user, virtualenv or pip setting from the caller's environment leaks into a
    test (tests/environment.py; child_env is the same for a child process)."""
    for name in list(os.environ):
        if is_callers_setting(name):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def fs(fs):
    """pyfakefs, corrected where it differs from Linux in a way these tests would see.

    pyfakefs 6 applies `os.open`'s mode argument to a file that already exists (Linux uses it only when
    O_CREAT creates the file), so every read through `os.open` would look like a chmod.
    """
    from pyfakefs.fake_os import FakeOsModule

    original = FakeOsModule.open

    def open_like_linux(self, path, flags, mode=None, *, dir_fd=None):
        full = self._path_with_dir_fd(path, self.open, dir_fd)
        before = None
        if self.filesystem.exists(full, check_link=True) and not self.filesystem.islink(full):
            before = self.filesystem.stat(full).st_mode
        fd = original(self, path, flags, mode, dir_fd=dir_fd)
        if before is not None:
            self.filesystem.chmod(full, before & 0o7777)
        return fd

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FakeOsModule, "open", open_like_linux)
        yield fs
