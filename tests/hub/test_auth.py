"""KBaseAuthenticator against the KBase Auth2 stand-in, over real HTTP on 127.0.0.1.

A small tornado app stands where the hub's handlers stand: its request carries the browser's cookies to
JupyterHub's own `get_authenticated_user` (authenticate, check_allowed, is_admin, in JupyterHub's order)
and `refresh_user`, and answers with what they returned or the refusal they raised. The pages a person
sees are checked on a real hub in test_kbase_login.py. Every log record of every test is scanned for
every token the test used.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web as web_aiohttp
from berdl_hub.auth import KBaseAuthenticator
from berdl_hub.kbase_auth2 import Auth2Client, Auth2Unavailable
from berdl_hub.services import close_shared_client
from tornado import httpserver, netutil, web

from localhub.standins.http import serve
from localhub.standins.hub import FakeUser
from localhub.standins.kbase_auth2 import KBaseAuth2, new_token
from tests.hub.hubtest_support import assert_no_secret_in, closed_port_url

pytestmark = pytest.mark.asyncio
APPROVED, ADMIN = "BERDL_USER", "CDM_JUPYTERHUB_ADMIN"


class Probe(web.RequestHandler):
    """GET /login: JupyterHub's login sequence; GET /refresh?user=NAME: refresh_user of that user;
    `&as=OTHER`: the request of another, already known user (an admin starting NAME's server)."""

    def get_current_user(self) -> FakeUser | None:
        name = self.get_argument("as", None)
        return FakeUser(name) if name else None

    async def get(self, what: str) -> None:
        authenticator: KBaseAuthenticator = self.settings["authenticator"]
        try:
            if what == "login":
                result: Any = await authenticator.get_authenticated_user(self, None)
            else:
                result = await authenticator.refresh_user(
                    self.settings["users"][self.get_argument("user")], self
                )
        except web.HTTPError as refused:
            self.set_status(refused.status_code)
            html = str(getattr(refused, "jupyterhub_html_message", ""))
            self.finish({"refused": refused.jupyterhub_message, "html": html})  # type: ignore[attr-defined]
            return
        self.finish({"result": result})


@dataclass
class Rig:
    auth2: KBaseAuth2
    authenticator: KBaseAuthenticator
    hub: str  # the probe's base URL
    users: dict[str, FakeUser]
    tokens: list[str]

    def add_user(self, name: str, **account: Any) -> str:
        token = self.auth2.add_user(name, **account)
        self.tokens.append(token)
        return token

    async def get(
        self, path: str, cookies: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = dict(headers or {})
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        async with aiohttp.ClientSession() as client, client.get(self.hub + path, headers=headers) as answer:
            text = await answer.text()
            if answer.status != 200:  # a refusal's text and link are what the user's page shows
                assert_no_secret_in(text, self.tokens)
            return answer.status, json.loads(text)

    async def login(self, token: str | None, cookie: str = "kbase_session") -> tuple[int, dict[str, Any]]:
        return await self.get("/login?next=%2Fhub%2Fspawn", {cookie: token} if token else None)


@pytest.fixture
def scanned_logs(all_logs: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Tokens a test adds here must appear in no log record at any level, in any phase of the test."""
    tokens: list[str] = []
    yield tokens
    assert tokens, "the test used no token"
    records = [r for when in ("setup", "call") for r in all_logs.get_records(when)]
    assert records, "no log records were captured"
    assert_no_secret_in("\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in records), tokens)


@pytest_asyncio.fixture
async def rig(scanned_logs: list[str]) -> AsyncIterator[Rig]:
    auth2 = KBaseAuth2()
    async with serve(auth2.app()) as auth_base:
        authenticator = KBaseAuthenticator(
            auth_url=f"{auth_base}/services/auth",
            kbase_login_url=f"{auth_base}/login?redirect={{next}}",
            approved_roles=[APPROVED],
            admin_roles=[ADMIN],
            auth_request_timeout=2.0,
        )
        users: dict[str, FakeUser] = {}
        app = web.Application(
            [(r"/(login|refresh)", Probe)], authenticator=authenticator, users=users, login_url="/hub/login"
        )
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        server = httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        # JupyterHub.public_url, as the hub's handlers see it (parsed)
        app.settings["public_url"] = urlparse(f"http://127.0.0.1:{port}/")
        try:
            yield Rig(auth2, authenticator, f"http://127.0.0.1:{port}", users, scanned_logs)
        finally:
            server.stop()
            await server.close_all_connections()
            await close_shared_client()


@pytest.mark.parametrize("slash", ["", "/"])
async def test_a_user_with_an_approved_role_and_mfa_logs_in(rig: Rig, slash: str) -> None:
    rig.authenticator.auth_url = rig.authenticator.auth_url.rstrip("/") + slash
    token = rig.add_user("alice", customroles=[APPROVED, "OTHER"])
    status, body = await rig.login(token)
    assert status == 200, body
    result = body["result"]
    assert result["name"] == "alice"
    assert result["admin"] is False  # no admin role
    state = result["auth_state"]
    assert state["kbase_token"] == token
    assert state["mfa"] == "Used"
    assert state["roles"] == [APPROVED, "OTHER"]
    assert state["token_expires"] == rig.auth2.tokens[token].expires / 1000
    # Both calls, asked at once, at the service root however it was written.
    assert sorted(rig.auth2.calls) == ["GET /services/auth/api/V2/me", "GET /services/auth/api/V2/token"]


async def test_the_spawner_reads_the_key_the_authenticator_writes(rig: Rig) -> None:
    from berdl_hub.spawner import BERDLSpawner

    token = rig.add_user("alice", customroles=[APPROVED])
    _, body = await rig.login(token)
    assert BERDLSpawner.auth_state_token_key.default_value in body["result"]["auth_state"]


async def test_the_backup_cookie_is_read_too(rig: Rig) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    status, body = await rig.login(token, cookie="kbase_session_backup")
    assert (status, body["result"]["name"]) == (200, "alice")


async def test_an_admin_role_makes_an_admin_and_lets_in(rig: Rig) -> None:
    token = rig.add_user("carol", customroles=[ADMIN])
    status, body = await rig.login(token)
    assert status == 200, body
    assert body["result"]["admin"] is True


async def test_no_cookie_is_no_login(rig: Rig) -> None:
    rig.add_user("alice", customroles=[APPROVED])
    assert await rig.login(None) == (200, {"result": None})
    assert rig.auth2.calls == []


@pytest.mark.parametrize("how", ["revoked", "expired", "never issued"])
async def test_an_invalid_token_is_told_to_log_in_again(rig: Rig, how: str) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    if how == "revoked":
        rig.auth2.revoke(token)
    elif how == "expired":
        token = rig.auth2.issue_token("alice", expires_in=-1)
        rig.tokens.append(token)
    else:
        token = new_token()  # in KBase's form, but Auth2 never issued it
        rig.tokens.append(token)
    status, body = await rig.login(token)
    assert status == 401
    assert "expired or was revoked" in body["refused"]
    # The link goes to KBase's login page, with the way back to the hub's login page and its next.
    back = f"{rig.hub}/hub/login?next=%2Fhub%2Fspawn"
    assert f"/login?redirect={quote(back, safe='')}'>Log in to KBase again</a>" in body["html"]


async def test_a_user_without_an_approved_role_is_refused_with_the_roles_needed(rig: Rig) -> None:
    token = rig.add_user("dave", customroles=["SOMETHING_ELSE"])
    status, body = await rig.login(token)
    assert status == 403
    assert f"none of the roles this hub needs: {APPROVED}, {ADMIN}" in body["refused"]


async def test_allowed_users_still_mean_what_they_mean_upstream(rig: Rig) -> None:
    token = rig.add_user("dave", customroles=[])
    rig.authenticator.allowed_users = {"dave"}
    status, body = await rig.login(token)
    assert (status, body["result"]["name"]) == (200, "dave")


@pytest.mark.parametrize("mfa", ["NotUsed", "Unknown"])
async def test_a_login_without_a_second_factor_is_refused(rig: Rig, mfa: str) -> None:
    token = rig.add_user("erin", customroles=[APPROVED], mfa=mfa)
    status, body = await rig.login(token)
    assert status == 403
    assert f"did not use one (MFA: {mfa})" in body["refused"]
    assert "two-factor authentication" in body["refused"]
    rig.authenticator.require_mfa = False
    status, body = await rig.login(token)
    assert (status, body["result"]["auth_state"]["mfa"]) == (200, mfa)


@pytest.mark.parametrize("fault", ["down", "slow", "500", "non-json", "nothing listening"])
async def test_an_unusable_auth_service_is_a_503_try_again(rig: Rig, fault: str) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    if fault == "nothing listening":
        rig.authenticator.auth_url = closed_port_url() + "/services/auth/"
    else:
        rig.auth2.fault = fault
    rig.auth2.slow_seconds = 30
    rig.authenticator.auth_request_timeout = 0.5
    status, body = await rig.login(token)
    assert status == 503
    assert body["refused"] == "KBase's login service is not answering right now. Try again in a minute."


async def test_a_refresh_after_revocation_ends_the_session(rig: Rig) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    _, body = await rig.login(token)
    rig.users["alice"] = FakeUser("alice", auth_state=body["result"]["auth_state"])
    status, refreshed = await rig.get("/refresh?user=alice")
    assert status == 200
    assert refreshed["result"]["auth_state"]["kbase_token"] == token
    rig.auth2.revoke(token)
    assert await rig.get("/refresh?user=alice") == (200, {"result": False})


async def test_a_refresh_while_auth2_is_down_keeps_the_session(rig: Rig) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    rig.users["alice"] = FakeUser("alice", auth_state={"kbase_token": token, "checked_at": time.time()})
    rig.auth2.fault = "500"
    assert await rig.get("/refresh?user=alice") == (200, {"result": True})


class RunningServer:
    """What the authenticator hands a renewed token to: a running server's spawner."""

    active = True

    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def use_kbase_token(self, token: str) -> None:
        self.tokens.append(token)


async def test_a_new_cookie_replaces_the_stored_token_and_reaches_the_running_servers(rig: Rig) -> None:
    old = rig.add_user("alice", customroles=[APPROVED, ADMIN])
    server = RunningServer()
    rig.users["alice"] = FakeUser("alice", auth_state={"kbase_token": old}, spawners={"": server})
    new = rig.auth2.issue_token("alice")
    rig.tokens.append(new)
    status, body = await rig.get("/refresh?user=alice", {"kbase_session": new})
    assert status == 200
    assert body["result"]["auth_state"]["kbase_token"] == new
    assert body["result"]["admin"] is True
    for _ in range(50):
        if server.tokens:
            break
        await asyncio.sleep(0.02)
    assert server.tokens == [new]  # its memory and Secret (the spawner's use_kbase_token)


async def test_a_cookie_of_another_user_or_a_lost_role_ends_the_session(rig: Rig) -> None:
    alice = rig.add_user("alice", customroles=[APPROVED, ADMIN])
    bob = rig.add_user("bob", customroles=[APPROVED])
    rig.users["alice"] = FakeUser("alice", auth_state={"kbase_token": alice})
    assert await rig.get("/refresh?user=alice", {"kbase_session": bob}) == (200, {"result": False})

    rig.auth2.set_roles("alice", [APPROVED])
    _, body = await rig.get("/refresh?user=alice")
    assert body["result"]["admin"] is False  # the admin role is gone, and admin with it
    rig.auth2.set_roles("alice", [])
    assert await rig.get("/refresh?user=alice") == (200, {"result": False})


async def test_an_admin_starting_a_users_server_refreshes_it_with_the_users_stored_token(rig: Rig) -> None:
    alice = rig.add_user("alice", customroles=[APPROVED])
    ada = rig.add_user("ada", customroles=[APPROVED, ADMIN])
    rig.users["alice"] = FakeUser("alice", auth_state={"kbase_token": alice})
    # JupyterHub refreshes alice before the spawn with ada's request, which carries ada's KBase cookie.
    status, body = await rig.get("/refresh?user=alice&as=ada", {"kbase_session": ada})
    assert status == 200
    assert body["result"]["auth_state"]["kbase_token"] == alice


async def test_a_lost_role_ends_access_also_beside_an_allow_list(rig: Rig) -> None:
    """With allowed_users set, JupyterHub by default keeps every user who ever logged in allowed."""
    rig.authenticator.allowed_users = {"breakglass"}
    token = rig.add_user("alice", customroles=[APPROVED])
    _, body = await rig.login(token)
    rig.authenticator.add_user(FakeUser("alice"))  # what the hub does at a login and at each start
    rig.users["alice"] = FakeUser("alice", auth_state=body["result"]["auth_state"])
    rig.auth2.set_roles("alice", [])
    assert await rig.get("/refresh?user=alice") == (200, {"result": False})
    status, refused = await rig.login(token)
    assert status == 403
    assert "none of the roles this hub needs" in refused["refused"]


async def test_a_user_with_no_stored_token_must_log_in(rig: Rig) -> None:
    rig.add_user("alice", customroles=[APPROVED])
    rig.users["alice"] = FakeUser("alice", auth_state=None)
    assert await rig.get("/refresh?user=alice") == (200, {"result": False})


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, "<html>401 from a gateway</html>"),  # not Auth2's JSON: says nothing about the token
        (401, json.dumps({"error": {"httpcode": 401, "appcode": 99999}})),  # not an appcode about the token
        (200, json.dumps({"user": "alice"})),  # Auth2's 200 without what the hub needs
    ],
)
async def test_answers_that_do_not_follow_the_api_are_not_blamed_on_the_user(
    scanned_logs: list[str], status: int, body: str
) -> None:
    async def answer(request: web_aiohttp.Request) -> web_aiohttp.Response:
        return web_aiohttp.Response(status=status, text=body, content_type="application/json")

    app = web_aiohttp.Application()
    app.router.add_get("/api/V2/{call}", answer)
    token = "not-checked-" + "x" * 20
    scanned_logs.append(token)
    async with serve(app) as base:
        client = Auth2Client(base, timeout=2.0)
        with pytest.raises(Auth2Unavailable):
            await client.check(token)
    await close_shared_client()


# --- finding 1 of issue 23: a value the user sends is never a success when it cannot be checked -------


async def test_a_junk_cookie_does_not_keep_a_revoked_users_session(rig: Rig) -> None:
    """Role taken away, token revoked, and a 9,000-byte cookie: a front end with an 8 KiB header limit
    answers 400 without JSON, which is an outage to the client. The session must end all the same."""
    token = rig.add_user("ada", customroles=[APPROVED, ADMIN])
    rig.users["ada"] = FakeUser("ada", auth_state={"kbase_token": token, "checked_at": time.time()})
    rig.auth2.set_roles("ada", [])
    rig.auth2.revoke(token)
    assert await rig.get("/refresh?user=ada", {"kbase_session": "A" * 9000}) == (200, {"result": False})


async def test_a_cookie_not_in_kbases_token_form_never_reaches_auth2(rig: Rig) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    junk = "not-a-kbase-token-" + "x" * 20
    assert await rig.login(junk) == (200, {"result": None})  # the login page, as without a cookie
    assert rig.auth2.calls == []
    rig.users["alice"] = FakeUser("alice", auth_state={"kbase_token": token, "checked_at": time.time()})
    status, body = await rig.get("/refresh?user=alice", {"kbase_session": junk})
    assert (status, body["result"]["auth_state"]["kbase_token"]) == (200, token)
    assert len(rig.auth2.calls) == 2  # the stored token's two calls, no more


async def test_a_cookie_auth2_cannot_check_is_set_aside_for_the_stored_token(rig: Rig) -> None:
    stored = rig.add_user("alice", customroles=[APPROVED])
    cookie = rig.auth2.issue_token("alice")
    rig.tokens.append(cookie)
    rig.users["alice"] = FakeUser("alice", auth_state={"kbase_token": stored, "checked_at": time.time()})
    rig.auth2.fault, rig.auth2.fault_only_for = "non-json", {cookie}
    status, body = await rig.get("/refresh?user=alice", {"kbase_session": cookie})
    assert (status, body["result"]["auth_state"]["kbase_token"]) == (200, stored)
    rig.auth2.revoke(stored)
    assert await rig.get("/refresh?user=alice", {"kbase_session": cookie}) == (200, {"result": False})


# --- finding 2: an expired token, and an outage, have bounds ------------------------------------------


async def test_an_expired_stored_token_ends_the_session_without_asking_auth2(rig: Rig) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])  # Auth2 would still say yes
    state = {"kbase_token": token, "token_expires": time.time() - 1, "checked_at": time.time()}
    rig.users["alice"] = FakeUser("alice", auth_state=state)
    assert await rig.get("/refresh?user=alice") == (200, {"result": False})
    assert rig.auth2.calls == []


async def test_an_outage_keeps_the_session_only_within_its_grace(rig: Rig) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    rig.auth2.fault = "500"
    recent = {"kbase_token": token, "checked_at": time.time() - 60}
    rig.users["alice"] = FakeUser("alice", auth_state=recent)
    assert await rig.get("/refresh?user=alice") == (200, {"result": True})
    long_ago = {"kbase_token": token, "checked_at": time.time() - 2 * 3600}  # the default grace: an hour
    rig.users["alice"] = FakeUser("alice", auth_state=long_ago)
    assert await rig.get("/refresh?user=alice") == (200, {"result": False})
    rig.authenticator.auth_outage_grace = 10
    rig.users["alice"] = FakeUser("alice", auth_state=recent)
    assert await rig.get("/refresh?user=alice") == (200, {"result": False})


async def test_a_good_check_records_when_it_was_made(rig: Rig) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    before = time.time()
    _, body = await rig.login(token)
    assert before <= body["result"]["auth_state"]["checked_at"] <= time.time()


# --- finding 5: the way back from KBase's login page is the hub's configured public URL ---------------


async def test_the_way_back_from_kbase_is_the_public_url_not_the_host_header(rig: Rig) -> None:
    token = rig.add_user("alice", customroles=[APPROVED])
    rig.auth2.revoke(token)
    status, body = await rig.get(
        "/login?next=%2Fhub%2Fspawn", {"kbase_session": token}, {"Host": "evil.example"}
    )
    assert status == 401
    back = quote(f"{rig.hub}/hub/login?next=%2Fhub%2Fspawn", safe="")
    assert f"/login?redirect={back}'>" in body["html"]
    assert "evil.example" not in body["html"]
