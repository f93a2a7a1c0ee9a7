"""Helpers of the hub tests: a URL where nothing listens, and the check that no secret reached a log."""

from __future__ import annotations

from localhub.procs import free_port


def closed_port_url() -> str:
    """A URL where nothing listens: connecting is refused."""
    return f"http://127.0.0.1:{free_port()}"


def assert_no_secret_in(text: str, secrets: list[str]) -> None:
    """Fail when any of the values appears in the text (names only a prefix of what leaked)."""
    assert all(secrets), "a secret to look for is empty"
    leaked = [s[:6] + "..." for s in secrets if s in text]
    assert not leaked, f"secrets found in logs: {leaked}"
