"""A renewed KBase token forwarded by a user's server (token_refresh), and running servers stopped when a
login ends (revocation), on a real hub (the stack of test_hub.py, SQLite) whose users' servers are
hubtest_userserver processes (SimpleLocalProcessSpawner): each forwards a token as the notebook image's
server extension does, with its own API token. Logins go through the KBase Auth2 stand-in.

Every log is scanned for every token used.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from localhub.procs import Process
from localhub.standins.kbase_auth2 import APPROVED_ROLE, new_token
from tests.hub.hubtest_kbase import AUTH2
from tests.hub.hubtest_userserver import SPAWNER_CONFIG
from tests.hub.test_hub import ADMIN_TOKEN, HubStack, hub_stack, log_in, stored_auth_state  # noqa: F401
from tests.hub.test_kbase_login import shown_text, sqlite_stack  # noqa: F401  (a fixture)
from tests.hub.test_kbase_session_life import hub_with

pytestmark = pytest.mark.slow

# Users of this module only.
TARA = AUTH2.add_user("tara", customroles=[APPROVED_ROLE])
TOM = AUTH2.add_user("tom", customroles=[APPROVED_ROLE])
VIC = AUTH2.add_user("vic", customroles=[APPROVED_ROLE])
WES = AUTH2.add_user("wes", customroles=[APPROVED_ROLE])
XIA = AUTH2.add_user("xia", customroles=[APPROVED_ROLE])
YVES = AUTH2.add_user("yves", customroles=[APPROVED_ROLE])
TOKENS = [TARA, TOM, VIC, WES, XIA, YVES]
ADMIN = {"Authorization": f"token {ADMIN_TOKEN}"}


@contextlib.contextmanager
def hub_with_servers(stack: HubStack, settings: str = "") -> Iterator[Process]:
    """The stack's hub, its users' servers hubtest_userserver processes (hub_with)."""
    with hub_with(stack, SPAWNER_CONFIG.format(homes=str(stack.tmp)) + settings, TOKENS) as hub:
        yield hub


def logged_in_with_a_server(stack: HubStack, user: str) -> None:
    """The user logs in on KBase's page (their auth state holds their token), then their server starts."""
    with httpx.Client(follow_redirects=False) as browser:
        log_in(browser, stack.public_url, user)
    hub_api = f"http://127.0.0.1:{stack.hub_port}/hub/api"
    assert httpx.post(f"{hub_api}/users/{user}/server", headers=ADMIN, timeout=60).status_code in (201, 202)
    wait_until(lambda: server_runs(stack, user), f"{user}'s server never started")


def server_runs(stack: HubStack, user: str) -> bool:
    hub_api = f"http://127.0.0.1:{stack.hub_port}/hub/api"
    model = httpx.get(f"{hub_api}/users/{user}", headers=ADMIN).json()
    server = model.get("servers", {}).get("")
    return bool(server and server.get("ready"))


def forwarded_by(stack: HubStack, user: str, token: str) -> tuple[int, str]:
    """`user`'s server forwards `token` to the hub; the hub's answer (status, body)."""
    answer = httpx.post(f"{stack.public_url}/user/{user}/forward-kbase-token", content=token, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    got = answer.json()
    return got["status"], got["body"]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_server_brings_its_users_renewed_token_and_only_theirs(sqlite_stack: HubStack) -> None:  # noqa: F811
    stack = sqlite_stack
    with hub_with_servers(stack, "c.KBaseAuthenticator.check_rate_per_minute = 8\n"):
        logged_in_with_a_server(stack, "tara")
        logged_in_with_a_server(stack, "tom")
        tara_renewed = AUTH2.issue_token("tara")  # a new KBase login of tara's, in her browser
        TOKENS.append(tara_renewed)

        # tom's server sends tara's token: it is not tom's, and tara's login is not touched.
        status, body = forwarded_by(stack, "tom", tara_renewed)
        assert (status, "belongs to another KBase user" in body) == (403, True)
        assert stored_auth_state(stack.public_url, "tara")["kbase_token"] == TARA
        assert stored_auth_state(stack.public_url, "tom")["kbase_token"] == TOM

        # tara's server sends it: Auth2 says it is hers and meets the rules; it is her token now.
        assert forwarded_by(stack, "tara", tara_renewed) == (200, '{"accepted": true}')
        assert stored_auth_state(stack.public_url, "tara")["kbase_token"] == tara_renewed

        # What is not a KBase token is not sent to Auth2.
        calls = len(AUTH2.calls)
        assert forwarded_by(stack, "tara", "A" * 9000)[0] == 400
        assert len(AUTH2.calls) == calls

        # A token of hers that no longer meets the rules (her role is gone) is refused.
        AUTH2.set_roles("tara", [])
        without_role = AUTH2.issue_token("tara")
        TOKENS.append(without_role)
        status, body = forwarded_by(stack, "tara", without_role)
        assert (status, "no longer holds a role" in body) == (403, True)
        AUTH2.set_roles("tara", [APPROVED_ROLE])

        # An outage is a 503: the server tries again later; nothing changes.
        AUTH2.fault = "500"
        try:
            assert forwarded_by(stack, "tara", new_token())[0] == 503
        finally:
            AUTH2.fault = "ok"
        assert stored_auth_state(stack.public_url, "tara")["kbase_token"] == tara_renewed

        # Not a user: a service's token (here the test's admin service) cannot use it.
        hub_api = f"http://127.0.0.1:{stack.hub_port}/hub/api"
        as_service = httpx.post(f"{hub_api}/berdl/kbase-token", headers=ADMIN, json={"token": tara_renewed})
        assert as_service.status_code == 403

        # A loop: past her servers' budget (8 checks a minute, refilling), 429, without asking Auth2.
        for _ in range(20):
            calls = len(AUTH2.calls)
            status, _ = forwarded_by(stack, "tara", tara_renewed)
            if status == 429:
                break
        assert status == 429
        assert len(AUTH2.calls) == calls


REVOCATION = "c.KBaseAuthenticator.revocation_check_interval = 1\n"


def test_a_login_that_ends_stops_the_users_running_servers(sqlite_stack: HubStack) -> None:  # noqa: F811
    """Whether or not the user makes requests: a role taken away, or a stored token that expires, stops
    every server of the user within the check's interval (here 1 s), with one line in the hub's log; an
    Auth2 outage stops nothing, and a renewed token the server brought first keeps the server."""
    stack = sqlite_stack
    with hub_with_servers(stack, REVOCATION) as hub:
        wes_short = AUTH2.issue_token("wes", expires_in=8)  # the login wes's browser will have
        TOKENS.append(wes_short)
        for user in ("vic", "wes", "xia", "yves"):
            logged_in_with_a_server(stack, user)

        AUTH2.set_roles("vic", [])
        wait_until(lambda: not server_runs(stack, "vic"), "vic's server still runs without his role")
        line = "Stopping the servers of vic (vic): the KBase account no longer holds a role this hub needs"
        assert line in hub.log()
        # What vic sees next: his next page of the hub checks his login, and the login page says why.
        with httpx.Client(follow_redirects=True) as browser:
            browser.cookies.set("kbase_session", VIC, domain="127.0.0.1", path="/")
            page = browser.get(f"{stack.public_url}/hub/home", headers={"Sec-Fetch-Site": "same-origin"})
            assert page.status_code == 403
            assert "none of the roles this hub needs" in shown_text(page)

        wait_until(lambda: not server_runs(stack, "wes"), "wes's server still runs after his token expired")
        assert "Stopping the servers of wes (wes): the stored KBase token has expired" in hub.log()

        # yves's server brings his new login's token; then his first token is revoked: he keeps his server.
        yves_renewed = AUTH2.issue_token("yves")
        TOKENS.append(yves_renewed)
        assert forwarded_by(stack, "yves", yves_renewed)[0] == 200
        AUTH2.revoke(YVES)

        # Auth2 fails xia's checks: rounds go by (two calls each for xia and yves), and nothing stops.
        AUTH2.fault, AUTH2.fault_only_for = "500", {XIA}
        try:
            calls = len(AUTH2.calls)
            wait_until(lambda: len(AUTH2.calls) >= calls + 12, "no three rounds of checks")
            assert server_runs(stack, "xia")
            assert server_runs(stack, "yves")
        finally:
            AUTH2.fault, AUTH2.fault_only_for = "ok", set()
        assert "Stopping the servers of xia" not in hub.log()
        assert "Stopping the servers of yves" not in hub.log()
