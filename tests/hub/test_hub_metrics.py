"""/hub/metrics of a real JupyterHub (hub/jupyterhub_config.py), beside a real proxy, with user servers
of SimpleLocalProcessSpawner: only Prometheus's token (BERDL_HUB_METRICS_TOKEN, scope read:metrics and
nothing more) reads it, and the hub counts what it sees of its own services: the real
jupyterhub-idle-culler's stops, the stops of a user and of another service, and berdl-proxy-watch's
restores of a restarted proxy's routes (berdl_hub.hub_requests)."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.hub.hubtest_support import assert_no_secret_in
from tests.hub.hubtest_userserver import SPAWNER_CONFIG
from tests.hub.test_hub import (
    ADMIN_TOKEN,
    EXTRA_CONFIG,
    SECRETS,
    HubStack,
    hub_stack,  # noqa: F401  (the fixture: a real hub beside a real proxy)
    log_in,
)
from tests.hub.test_proxy_restart import GIVE_UP, restart_proxy, start_server, user_page

pytestmark = pytest.mark.slow

METRICS_TOKEN = secrets.token_hex(32)
# The test service may also make a token for alice, as she would make one for herself.
TOKENS_ROLE = """
c.JupyterHub.load_roles.append({"name": "berdl-test-tokens", "scopes": ["tokens"], "services": [name]})
"""


def start_hub(stack: HubStack, **env: str) -> None:
    tmp = stack.tmp
    (tmp / "extra_config.py").write_text(EXTRA_CONFIG + SPAWNER_CONFIG.format(homes=str(tmp)) + TOKENS_ROLE)
    (tmp / "data").mkdir()
    stack.env.update(
        BERDL_HUB_METRICS_TOKEN=METRICS_TOKEN,
        JUPYTERHUB_DB_URL=f"sqlite:///{tmp}/data/jupyterhub.sqlite",
        **env,
    )
    stack.start_hub()


def hub_api(stack: HubStack) -> str:
    return f"http://127.0.0.1:{stack.hub_port}/hub/api"


def metrics_page(stack: HubStack, token: str | None = METRICS_TOKEN) -> httpx.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return httpx.get(f"http://127.0.0.1:{stack.hub_port}/hub/metrics", headers=headers, timeout=10)


def sample(stack: HubStack, name: str, **labels: str) -> float:
    """One sample of the hub's /hub/metrics, read with Prometheus's token."""
    page = metrics_page(stack)
    assert page.status_code == 200, page.text[:300]
    for family in text_string_to_metric_families(page.text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    raise AssertionError(f"{name}{labels} is not on /hub/metrics")


def stop(stack: HubStack, user: str, token: str) -> int:
    answer = httpx.delete(
        f"{hub_api(stack)}/users/{user}/server", headers={"Authorization": f"token {token}"}, timeout=60
    )
    return answer.status_code


def start_again(stack: HubStack, user: str) -> None:
    """Start the server of a user that exists; returns once its page answers through the proxy."""
    admin = {"Authorization": f"token {ADMIN_TOKEN}"}
    started = httpx.post(f"{hub_api(stack)}/users/{user}/server", headers=admin, timeout=60)
    assert started.status_code in (201, 202), started.text
    deadline = time.monotonic() + GIVE_UP
    while (page := user_page(stack.public_url, user)) is None or page.status_code != 200:
        assert time.monotonic() < deadline, f"{user}'s server never answered through the proxy"
        time.sleep(0.2)


def wait_stopped(stack: HubStack, user: str) -> None:
    admin = {"Authorization": f"token {ADMIN_TOKEN}"}
    deadline = time.monotonic() + GIVE_UP
    while httpx.get(f"{hub_api(stack)}/users/{user}", headers=admin).json()["servers"]:
        assert time.monotonic() < deadline, f"{user}'s server is still running"
        time.sleep(0.2)


def test_only_prometheus_token_reads_the_metrics_and_the_hub_counts_stops_and_restores(
    hub_stack: HubStack,  # noqa: F811
) -> None:
    start_hub(hub_stack, BERDL_IDLE_TIMEOUT="0")
    admin = {"Authorization": f"token {ADMIN_TOKEN}"}
    start_server(hub_stack, "alice")
    # Her login stores her KBase token, with which the hub accepts her own API tokens (refresh_user).
    with httpx.Client(timeout=30) as browser:
        log_in(browser, hub_stack.public_url, "alice")
    # A token of alice's that may manage her own servers, as her own token may.
    body = {"scopes": ["servers!user"]}
    made = httpx.post(f"{hub_api(hub_stack)}/users/alice/tokens", headers=admin, json=body, timeout=10)
    assert made.status_code == 201, made.text
    alices_token = made.json()["token"]

    # Read with Prometheus's token only: not anonymously, not with a user's token.
    assert metrics_page(hub_stack, None).status_code == 403
    assert metrics_page(hub_stack, alices_token).status_code == 403
    assert metrics_page(hub_stack).status_code == 200
    # Prometheus's token reads the metrics and nothing else.
    users = httpx.get(f"{hub_api(hub_stack)}/users", headers={"Authorization": f"token {METRICS_TOKEN}"})
    assert users.status_code == 403

    assert sample(hub_stack, "berdl_server_stops_total", by="user") == 0
    assert stop(hub_stack, "alice", alices_token) in (202, 204)
    wait_stopped(hub_stack, "alice")
    assert sample(hub_stack, "berdl_server_stops_total", by="user") == 1

    start_again(hub_stack, "alice")
    assert stop(hub_stack, "alice", ADMIN_TOKEN) in (202, 204)
    wait_stopped(hub_stack, "alice")
    assert sample(hub_stack, "berdl_server_stops_total", by="service") == 1
    assert sample(hub_stack, "berdl_server_stops_total", by="culler") == 0
    # A stop of a server that is not running is no stop.
    assert stop(hub_stack, "alice", ADMIN_TOKEN) == 204  # JupyterHub's answer: nothing was running
    assert sample(hub_stack, "berdl_server_stops_total", by="service") == 1

    start_again(hub_stack, "alice")
    assert sample(hub_stack, "berdl_proxy_route_restores_total", outcome="ok") == 0
    restart_proxy(hub_stack)
    deadline = time.monotonic() + GIVE_UP
    while (page := user_page(hub_stack.public_url)) is None or page.status_code != 200:
        assert time.monotonic() < deadline, "the route never came back"
        time.sleep(0.1)
    assert sample(hub_stack, "berdl_proxy_route_restores_total", outcome="ok") == 1

    hub_stack.stop_hub()
    assert_no_secret_in(hub_stack.logs(), [*SECRETS, METRICS_TOKEN, alices_token])


def test_the_idle_cullers_stops_are_counted_as_the_cullers(hub_stack: HubStack) -> None:  # noqa: F811
    """The real jupyterhub-idle-culler, which the hub runs, stops an idle server: the hub counts it."""
    start_hub(hub_stack, BERDL_IDLE_TIMEOUT="5", BERDL_CULL_EVERY="1")
    start_server(hub_stack, "alice")
    wait_stopped(hub_stack, "alice")

    assert sample(hub_stack, "berdl_server_stops_total", by="culler") == 1
    assert sample(hub_stack, "berdl_server_stops_total", by="service") == 0
    hub_stack.stop_hub()
    assert_no_secret_in(hub_stack.logs(), [*SECRETS, METRICS_TOKEN])
