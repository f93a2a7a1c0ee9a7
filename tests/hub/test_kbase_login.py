"""What a person sees when logging in to a real hub with the `kbase` authenticator, and what the
spawner gets: the same stack as test_hub.py (a real JupyterHub, a separate configurable-http-proxy),
with the KBase Auth2 stand-in and a governance API stand-in that records the token each spawn sends.

Refusals are pages with the right status, in JupyterHub's own error template, with no traceback and
no token; every log is scanned for every token used.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web

from localhub.standins.kbase_auth2 import ADMIN_ROLE, APPROVED_ROLE, serve_in_thread
from tests.hub.hubtest_kbase import AUTH2
from tests.hub.hubtest_support import assert_no_secret_in
from tests.hub.test_hub import (  # noqa: F401  (hub_stack: a fixture)
    EXTRA_CONFIG,
    FROM_KBASE,
    SECRETS,
    HubStack,
    hub_stack,
    is_logged_in,
    log_in,
    stored_auth_state,
)

pytestmark = pytest.mark.slow

# Users of this module only: the tests revoke tokens and change the stand-in's mode.
RITA = AUTH2.add_user("rita", customroles=[APPROVED_ROLE])
DAVE = AUTH2.add_user("dave", customroles=["SOMETHING_ELSE"])
ERIN = AUTH2.add_user("erin", customroles=[APPROVED_ROLE], mfa="NotUsed")
GUS = AUTH2.add_user("gus", customroles=[APPROVED_ROLE])
REX = AUTH2.add_user("rex", customroles=[APPROVED_ROLE])
ROSA = AUTH2.add_user("rosa", customroles=[APPROVED_ROLE])
TOKENS = [RITA, DAVE, ERIN, GUS, REX, ROSA]


class GovernanceRecorder:
    """The governance API, refusing every call after noting the bearer token: the spawn stops there
    (with the spawner's default policy, "fail"), before anything needs Kubernetes."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/credentials/", self._credentials)
        return app

    async def _credentials(self, request: web.Request) -> web.Response:
        self.tokens.append(request.headers.get("Authorization", "").removeprefix("Bearer "))
        body = {"error": 503, "error_type": "Unavailable", "message": "the test stops the spawn here"}
        return web.json_response(body, status=503)


@pytest.fixture
def sqlite_stack(hub_stack: HubStack) -> HubStack:  # noqa: F811
    """The hub stack on SQLite in the test's folder (the database is not what these tests are about)."""
    data = hub_stack.tmp / "data"
    data.mkdir()
    hub_stack.env["JUPYTERHUB_DB_URL"] = f"sqlite:///{data}/jupyterhub.sqlite"
    return hub_stack


@pytest.fixture
def governance(sqlite_stack: HubStack) -> Iterator[GovernanceRecorder]:
    recorder = GovernanceRecorder()
    with serve_in_thread(recorder.app()) as url:
        sqlite_stack.env["GOVERNANCE_API_URL"] = url
        yield recorder


def page_with_cookie(base: str, token: str) -> httpx.Response:
    with httpx.Client(follow_redirects=False) as browser:
        browser.cookies.set("kbase_session", token, domain="127.0.0.1", path="/")
        return browser.get(f"{base}/hub/login", headers=FROM_KBASE)


def shown_text(page: httpx.Response) -> str:
    """The page's text as a person reads it: tags dropped, entities decoded, spaces folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def test_login_pages_say_what_to_do(sqlite_stack: HubStack, auth2_url: str) -> None:
    stack = sqlite_stack
    base = stack.public_url
    hub = stack.start_hub()
    try:
        # No cookie: the login page says so and links to KBase's, with the way back (and `next`).
        with httpx.Client(follow_redirects=False) as stranger:
            to_login = stranger.get(f"{base}/hub/spawn")
            assert to_login.status_code == 302
            page = stranger.get(httpx.URL(base).join(to_login.headers["location"]))
        assert page.status_code == 200
        assert "You are not logged in to KBase" in shown_text(page)
        back = quote(f"{base}/hub/login?next=%2Fhub%2Fspawn", safe="")
        assert f"href='{auth2_url}/login?redirect={back}'>Sign in with KBase" in html.unescape(page.text)

        AUTH2.revoke(RITA)
        page = page_with_cookie(base, RITA)
        assert page.status_code == 401
        text = shown_text(page)
        assert "401 : Unauthorized" in text
        assert "Your KBase login has expired or was revoked. Log in to KBase again" in text
        # A link, not its escaped source shown as text.
        assert re.search(
            f"<a href='{re.escape(auth2_url)}/login\\?redirect=[^']+'>Log in to KBase again</a>", page.text
        )

        page = page_with_cookie(base, DAVE)
        assert page.status_code == 403
        assert f"none of the roles this hub needs: {APPROVED_ROLE}, {ADMIN_ROLE}" in shown_text(page)

        page = page_with_cookie(base, ERIN)
        assert page.status_code == 403
        assert "needs a login with a second factor" in shown_text(page)

        AUTH2.fault = "500"
        try:
            page = page_with_cookie(base, GUS)
        finally:
            AUTH2.fault = "ok"
        assert page.status_code == 503
        assert "KBase's login service is not answering right now. Try again in a minute." in shown_text(page)
    finally:
        stack.stop_hub()
    assert "Traceback" not in hub.log()
    assert_no_secret_in(stack.logs(), SECRETS + TOKENS)


def wait_until(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


def test_a_spawn_gets_the_checked_token_and_never_a_revoked_one(
    sqlite_stack: HubStack, governance: GovernanceRecorder, auth2_url: str
) -> None:
    stack = sqlite_stack
    base = stack.public_url
    stack.start_hub()
    try:
        with httpx.Client(follow_redirects=False) as browser:
            log_in(browser, base, "gus")
            assert browser.get(f"{base}/hub/spawn").status_code == 302
            wait_until(lambda: governance.tokens)
            assert set(governance.tokens) == {GUS}  # (the spawner tries an idempotent GET again)

        with httpx.Client(follow_redirects=False) as browser:
            log_in(browser, base, "rex")
            AUTH2.revoke(REX)
            # The token is checked again before the spawn: a revoked one ends there, readably.
            refused = browser.get(f"{base}/hub/spawn")
            assert refused.status_code == 403, refused.text[:500]
            assert "login again" in shown_text(refused)
            assert set(governance.tokens) == {GUS}

            # Rex logs in to KBase again: the new cookie's token replaces the stored one, and the
            # spawn gets it.
            again = browser.post(f"{auth2_url}/login", data={"user": "rex", "redirect": f"{base}/hub/spawn"})
            assert again.status_code == 303
            new_token = AUTH2.accounts["rex"].current_token
            assert new_token != REX
            assert browser.get(f"{base}/hub/spawn").status_code == 302
            wait_until(lambda: new_token in governance.tokens)
            state = stored_auth_state(base, "rex")
            assert state is not None
            assert state["kbase_token"] == new_token
        assert REX not in governance.tokens
    finally:
        stack.stop_hub()
    assert_no_secret_in(stack.logs(), [*SECRETS, *TOKENS, new_token])


def test_a_revoked_token_ends_the_session_once_auth_refresh_age_has_passed(sqlite_stack: HubStack) -> None:
    stack = sqlite_stack
    base = stack.public_url
    (stack.tmp / "extra_config.py").write_text(EXTRA_CONFIG + "c.KBaseAuthenticator.auth_refresh_age = 1\n")
    stack.start_hub()
    try:
        with httpx.Client(follow_redirects=False) as browser:
            log_in(browser, base, "rosa")
            assert is_logged_in(browser, base)
            AUTH2.revoke(ROSA)
            # The next request after auth_refresh_age checks the token again, and the session ends.
            wait_until(lambda: not is_logged_in(browser, base))
            page = browser.get(f"{base}/hub/login", headers=FROM_KBASE)
            assert page.status_code == 401
            assert "Your KBase login has expired or was revoked" in shown_text(page)
    finally:
        stack.stop_hub()
    assert_no_secret_in(stack.logs(), SECRETS + TOKENS)
