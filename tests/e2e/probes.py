"""What the end-to-end tests read of the running system: the hub's own REST view of a user (through a
read-only hub service, the observer), the pods in the API and in podman, and a wait that names what
never happened."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from localhub.stack import Stack

OBSERVER = "e2e-observer"
#: The observer's API token; a module that adds the observer puts it in its stack's secrets.
OBSERVER_TOKEN = secrets.token_hex(32)


def observer_config(scopes: list[str]) -> str:
    """Operator settings (a stack's extra_config) that add the observer, allowed `scopes` only."""
    service = {"name": OBSERVER, "api_token": OBSERVER_TOKEN}
    role = {"name": OBSERVER, "scopes": scopes, "services": [OBSERVER]}
    return f"c.JupyterHub.services.append({service!r})\nc.JupyterHub.load_roles.append({role!r})\n"


def hub_user(stack: Stack, user: str) -> dict[str, Any]:
    """The user as the hub's REST API shows them to the observer (servers; auth state with its scope)."""
    answer = httpx.get(
        f"{stack.hub_url}/hub/api/users/{user}",
        headers={"Authorization": f"token {OBSERVER_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 200, f"GET /hub/api/users/{user}: {answer.status_code} {answer.text[:300]}"
    return answer.json()


def eventually(condition: Callable[[], Any], what: str, timeout: float = 300) -> Any:
    """Wait for the node or the hub to catch up; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not so after {timeout} s")


def pod_of(stack: Stack, user: str) -> dict[str, Any]:
    return stack.standins.objects("v1/pods")[f"jupyter-{user}"]


def podman_pods(stack: Stack) -> set[str]:
    listed = stack.standins.loop.run(stack.standins.node.podman("pod", "ps", "--format", "{{.Name}}"))
    return set(listed.stdout.split())
