"""The image tests' report of how long the image builds and pod plays took. Their `podman` fixture (the
images built once per run) lives in tests/conftest.py, shared with tests/e2e."""

from __future__ import annotations

import pytest

from tests.conftest import PODMAN_SECONDS as _TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIMINGS:
        shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in _TIMINGS.items())
        terminalreporter.write_line(f"image tests: {shown}")
