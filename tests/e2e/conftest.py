"""Fixtures of the end-to-end journey: one stack and one browser for the whole module, with the images
tests/images builds (the shared `podman` fixture: built once per run)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localhub.browser import chromium
from localhub.podman import Podman
from localhub.stack import Stack, running_stack
from localhub.tools import REPO
from localhub.users import make_users
from localhub.wheels import module_wheel
from tests.conftest import require_tool

#: Screenshots and every process's log, for a person to look at when a step fails (not committed).
E2E_WORK = REPO / ".work" / "e2e"
#: The package alice installs with %pip from the shared folder.
PROBE_PACKAGE = "berdl_probe_alice"
#: The journey's bounds on a KBase token's life, small (the defaults: 300 s, 30 s): the hub's check of
#: the users with a running server, and each kernel's look at ~/.berdl_kbase_session (steps 7 and 8).
REVOCATION_CHECK_SECONDS = 5
KERNEL_SYNC_SECONDS = 5
#: Step 8's bound, from a role taken away to the user's pod gone: one check interval, one round of
#: checks (each Auth2 call within auth_request_timeout, 10 s) and the stop, with room for a busy machine.
REVOCATION_BOUND_SECONDS = REVOCATION_CHECK_SECONDS + 10 + 45
TOKEN_BOUNDS = (
    f"c.KBaseAuthenticator.revocation_check_interval = {REVOCATION_CHECK_SECONDS}\n"
    f"c.BERDLSpawner.environment.update({{'KBASE_TOKEN_SYNC_SECONDS': '{KERNEL_SYNC_SECONDS}'}})\n"
)


@pytest.fixture(scope="module")
def stack(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for tool in ("node", "runuser"):
        require_tool(tool)
    wheel = module_wheel(tmp_path_factory.mktemp("wheels"), PROBE_PACKAGE)
    with running_stack(
        E2E_WORK,
        make_users("alice", "bob"),
        wheels={wheel.name: wheel.read_bytes()},
        extra_config=TOKEN_BOUNDS,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched
