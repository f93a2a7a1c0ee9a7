"""A restarted configurable-http-proxy gets a running user's route back from the proxy watcher
(berdl_hub.proxy_watch), with a real JupyterHub, a real proxy and a real user server process.

JupyterHub's own restore (update_last_activity) is pushed out to an hour here, so only the watcher can
bring the route back; the time from the new proxy answering to the user's page answering through it is
measured and printed (the bound stated in deploy/README.md is 10 s).
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from localhub.procs import Process, base_env, proxy_command, start, wait_for
from tests.hub.hubtest_support import assert_no_secret_in
from tests.hub.hubtest_userserver import SPAWNER_CONFIG
from tests.hub.test_hub import (
    ADMIN_TOKEN,
    EXTRA_CONFIG,
    PROXY_TOKEN,
    SECRETS,
    HubStack,
    hub_stack,  # noqa: F401  (the fixture: a real hub beside a real proxy)
)

pytestmark = pytest.mark.slow

# Only the watcher may restore routes in this test: JupyterHub's own round comes after an hour.
NO_ACTIVITY_ROUND = "c.JupyterHub.last_activity_interval = 3600\n"
GIVE_UP = 120  # seconds: far beyond the stated bound, only so that a broken watcher fails the test


def restart_proxy(stack: HubStack) -> Process:
    """Stop the stack's proxy and start a new, empty one on the same ports."""
    stack.proxy.stop()
    api_url = stack.env["CONFIGPROXY_API_URL"]
    cmd = proxy_command(
        int(stack.public_url.rsplit(":", 1)[1]),
        int(api_url.rsplit(":", 1)[1]),
        f"http://127.0.0.1:{stack.hub_port}",
    )
    env = {**base_env(), "CONFIGPROXY_AUTH_TOKEN": PROXY_TOKEN}
    stack.proxy = start("configurable-http-proxy", cmd, env, stack.tmp / "proxy-restarted.log")
    wait_for(f"{api_url}/api/routes", 30, stack.proxy)
    return stack.proxy


def user_page(base: str, user: str = "alice") -> httpx.Response | None:
    try:
        return httpx.get(f"{base}/user/{user}/", timeout=5)
    except httpx.HTTPError:
        return None


def start_server(stack: HubStack, user: str) -> str:
    """Create the user, start their server (hubtest_userserver); its page, read through the proxy."""
    admin = {"Authorization": f"token {ADMIN_TOKEN}"}
    hub_api = f"http://127.0.0.1:{stack.hub_port}/hub/api"
    assert httpx.post(f"{hub_api}/users/{user}", headers=admin).status_code == 201
    assert httpx.post(f"{hub_api}/users/{user}/server", headers=admin, timeout=60).status_code in (201, 202)
    deadline = time.monotonic() + 60
    while (page := user_page(stack.public_url, user)) is None or page.status_code != 200:
        assert time.monotonic() < deadline, f"{user}'s server never answered through the proxy"
        time.sleep(0.2)
    return page.text


def test_a_restarted_proxy_gets_the_users_route_back(hub_stack: HubStack) -> None:  # noqa: F811
    tmp = hub_stack.tmp
    (tmp / "extra_config.py").write_text(
        EXTRA_CONFIG + SPAWNER_CONFIG.format(homes=str(tmp)) + NO_ACTIVITY_ROUND
    )
    (tmp / "data").mkdir()
    hub_stack.env["JUPYTERHUB_DB_URL"] = f"sqlite:///{tmp}/data/jupyterhub.sqlite"
    base = hub_stack.public_url
    hub = hub_stack.start_hub()
    assert start_server(hub_stack, "alice") == "server of alice\n"

    restart_proxy(hub_stack)
    back_in_service = time.monotonic()
    while (page := user_page(base)) is None or page.text != "server of alice\n":
        assert time.monotonic() - back_in_service < GIVE_UP, f"no route after {GIVE_UP} s:\n{hub.log()}"
        time.sleep(0.05)
    seconds = time.monotonic() - back_in_service
    print(f"\nroute restored {seconds:.2f} s after the restarted proxy answered", file=sys.stderr)

    assert page.status_code == 200
    assert "[berdl-proxy-watch] WARNING the proxy had lost its routes" in hub.log()
    hub_stack.stop_hub()
    assert_no_secret_in(hub_stack.logs(), SECRETS)


def test_the_watcher_outside_a_hub_says_what_it_misses_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "berdl_hub.proxy_watch"], env=base_env(), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "JUPYTERHUB_API_URL is not set: run this as a JupyterHub service" in result.stderr
    assert "Traceback" not in result.stderr
