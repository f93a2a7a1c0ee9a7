"""Fixtures of the image tests: the images built once per run with the project's podman."""

from __future__ import annotations

import pytest

from tests.conftest import require_tool, skip_or_fail
from tests.images.podman import Podman, is_root

_TIMINGS: dict[str, float] = {}


def require_root() -> None:
    """Rootful podman with overlay storage (see images/podman) needs root; CI runs as root."""
    if is_root():
        return
    skip_or_fail("the image tests run podman as root (overlay storage, hostPath volumes)")


@pytest.fixture(scope="session")
def podman() -> Podman:
    """The project's podman, with localhost/berdl-init:test and localhost/berdl-notebook:test built.

    The first build of a machine makes the Debian base with debootstrap (its tarball is then cached in
    .work/images) and the stand-in image; later ones reuse podman's layer cache in .work/podman.
    """
    for tool in ("podman", "runc", "debootstrap"):
        require_tool(tool)
    require_root()
    podman = Podman(seconds=_TIMINGS)
    podman.build_images()
    return podman


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIMINGS:
        shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in _TIMINGS.items())
        terminalreporter.write_line(f"image tests: {shown}")
