"""A KBase session over its life on a real hub (the stack of test_hub.py: a real JupyterHub with
hub/jupyterhub_config.py, a separate configurable-http-proxy), against the KBase Auth2 stand-in: what a
junk cookie, an outage, another site and a loop can no longer do (issue 23, findings 1, 2 and 5), and that
a user whose role is taken away cannot log in again, also after a hub restart.

Every log is scanned for every token used.
"""

from __future__ import annotations

import contextlib
import html
import re
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from localhub.procs import Process
from localhub.standins.kbase_auth2 import ADMIN_ROLE, APPROVED_ROLE, new_token
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
)
from tests.hub.test_kbase_login import (  # noqa: F401  (fixtures)
    GovernanceRecorder,
    governance,
    shown_text,
    sqlite_stack,
)

pytestmark = pytest.mark.slow

# Users of this module only: the tests take roles away and revoke tokens.
IDA = AUTH2.add_user("ida", customroles=[APPROVED_ROLE, ADMIN_ROLE])
RORY = AUTH2.add_user("rory", customroles=[APPROVED_ROLE])
CLEO = AUTH2.add_user("cleo", customroles=[APPROVED_ROLE])
FAY = AUTH2.add_user("fay", customroles=[APPROVED_ROLE])
NEVER_ISSUED = new_token()
TOKENS = [IDA, RORY, CLEO, FAY, NEVER_ISSUED]
CROSS_SITE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}


@contextlib.contextmanager
def hub_with(stack: HubStack, settings: str = "", tokens: list[str] = TOKENS) -> Iterator[Process]:
    """The stack's hub with the operator's `settings` added; stopped after, its logs scanned for the hub's
    secrets and `tokens` (read then: a test may add the tokens it makes)."""
    (stack.tmp / "extra_config.py").write_text(EXTRA_CONFIG + settings)
    hub = stack.start_hub()
    try:
        yield hub
    finally:
        stack.stop_hub()
    assert_no_secret_in(stack.logs(), SECRETS + tokens)


def test_a_junk_cookie_does_not_keep_a_revoked_admin_in(sqlite_stack: HubStack) -> None:  # noqa: F811
    """Finding 1: an admin's role is taken away and the token revoked; a 9,000-byte `kbase_session`
    meets Auth2's 8 KiB header limit (400, no JSON), which the client takes for an outage. Before the fix
    the admin kept /hub/admin at every refresh."""
    base = sqlite_stack.public_url
    with hub_with(sqlite_stack, "c.KBaseAuthenticator.auth_refresh_age = 1\n"), httpx.Client() as browser:
        log_in(browser, base, "ida")
        assert browser.get(f"{base}/hub/admin", follow_redirects=False).status_code == 200
        AUTH2.set_roles("ida", [])
        AUTH2.revoke(IDA)
        browser.cookies.set("kbase_session", "A" * 9000, domain="127.0.0.1", path="/")
        time.sleep(1.5)  # past auth_refresh_age: the next request refreshes the login
        page = browser.get(f"{base}/hub/admin", follow_redirects=False)
        assert page.status_code == 302, "the revoked admin still has /hub/admin"
        assert "/hub/login" in page.headers["location"]


def test_an_outage_past_its_grace_refuses_a_spawn(
    sqlite_stack: HubStack,  # noqa: F811
    governance: GovernanceRecorder,  # noqa: F811
) -> None:
    """Finding 2: while Auth2 is down, a refresh before a spawn passes only within `auth_outage_grace`
    of the last good check. Before the fix every such refresh passed, and the spawn went on."""
    base = sqlite_stack.public_url
    with hub_with(sqlite_stack, "c.KBaseAuthenticator.auth_outage_grace = 1\n"), httpx.Client() as browser:
        log_in(browser, base, "fay")
        AUTH2.fault = "500"
        try:
            time.sleep(1.5)  # past the grace
            refused = browser.get(f"{base}/hub/spawn", follow_redirects=False)
        finally:
            AUTH2.fault = "ok"
        assert refused.status_code == 403, refused.text[:300]
        assert "login again" in shown_text(refused)
        assert governance.tokens == []  # the spawn never reached the governance API


# Only the proxy (127.0.0.1) is believed: a client that connects from elsewhere is its own address.
LIMITS = (
    "c.KBaseAuthenticator.check_rate_per_minute = 3\n"
    "c.KBaseAuthenticator.trusted_proxies = ['127.0.0.1/32']\n"
)


def test_another_site_the_host_header_logout_and_a_loop(
    sqlite_stack: HubStack,  # noqa: F811
    auth2_url: str,
) -> None:
    """Finding 5, on one hub: a cross-site navigation does not log in from the cookie (one press on the
    hub's own page does); the way back from KBase's login page is the configured public URL whatever Host
    the request names; the logout page links to KBase's logout; a client's cookie logins past its budget
    are answered 429 without asking Auth2, and another client is not held back."""
    base = sqlite_stack.public_url
    with hub_with(sqlite_stack, LIMITS) as hub:
        # Another site sends a browser that carries a KBase cookie to /hub/login: no login, no Auth2 call.
        with httpx.Client(follow_redirects=False) as browser:
            browser.cookies.set("kbase_session", CLEO, domain="127.0.0.1", path="/")
            calls = len(AUTH2.calls)
            page = browser.get(f"{base}/hub/login?next=%2Fhub%2Fspawn", headers=CROSS_SITE)
            assert page.status_code == 200
            assert "Another site sent you here" in shown_text(page)
            assert len(AUTH2.calls) == calls
            assert not is_logged_in(browser, base)
            # A forged way through the page (a wrong XSRF token) is no way through.
            forged = browser.get(f"{base}/hub/login?_xsrf=forged", headers=CROSS_SITE)
            assert forged.status_code == 200
            assert not is_logged_in(browser, base)
            # The press on the hub's own page: its link carries the browser's XSRF token.
            link = re.search(r"href='([^']+)'>\s*Sign in with KBase", page.text)
            assert link, "no button on the page"
            href = html.unescape(link.group(1))
            assert parse_qs(urlsplit(href).query)["next"] == ["/hub/spawn"]
            again = browser.get(f"{base}{href}", headers=CROSS_SITE)  # a browser without Fetch Metadata
            assert again.status_code == 302, again.text[:300]
            assert is_logged_in(browser, base)

        # The Host header is the client's to choose; the way back is the hub's public URL.
        with httpx.Client(follow_redirects=False) as stranger:
            page = stranger.get(f"{base}/hub/login", headers={"Host": "evil.example"})
            assert page.status_code == 200
            back = quote(f"{base}/hub/login", safe="")
            assert f"{auth2_url}/login?redirect={back}'" in html.unescape(page.text)
            assert "evil.example" not in page.text

        # Logout: the hub's page says the KBase cookie is still there and links to KBase's logout.
        with httpx.Client(follow_redirects=False) as browser:
            log_in(browser, base, "cleo")
            page = browser.get(f"{base}/hub/logout")
            assert page.status_code == 200
            assert "still logged in to KBase" in shown_text(page)
            assert f"href='{auth2_url}/logout'" in html.unescape(page.text)
            assert not is_logged_in(browser, base)

        # A loop of cookie logins from one client (the proxy believed, so the client is what it saw):
        # three checks a minute, then 429 without a call to Auth2. Another client still gets its answer.
        with httpx.Client(follow_redirects=False) as looping:
            statuses = [cookie_login(looping, base, "203.0.113.7") for _ in range(3)]
            assert statuses == [401, 401, 401]
            calls = len(AUTH2.calls)
            assert cookie_login(looping, base, "203.0.113.7") == 429
            assert len(AUTH2.calls) == calls
            assert cookie_login(looping, base, "203.0.113.8") == 401
        # A client that reaches the hub itself (a user pod) is its own address, whatever it forwards.
        hub_url = f"http://127.0.0.1:{sqlite_stack.hub_port}"
        direct = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(follow_redirects=False, transport=direct) as pod:
            statuses = [cookie_login(pod, hub_url, f"203.0.113.{n}") for n in (20, 21, 22, 23)]
            assert statuses == [401, 401, 401, 429]
    assert "Too many KBase logins from one client" in hub.log()


def cookie_login(client: httpx.Client, url: str, forwarded_for: str) -> int:
    """A cookie login with a token Auth2 never issued (401), as sent through a proxy that saw
    `forwarded_for`."""
    client.cookies.set("kbase_session", NEVER_ISSUED, domain="127.0.0.1", path="/")
    headers = {**FROM_KBASE, "X-Forwarded-For": forwarded_for}
    return client.get(f"{url}/hub/login", headers=headers).status_code


def test_logout_can_go_on_to_kbases_logout(sqlite_stack: HubStack, auth2_url: str) -> None:  # noqa: F811
    settings = "c.KBaseAuthenticator.logout_to_kbase = True\n"
    with hub_with(sqlite_stack, settings), httpx.Client(follow_redirects=False) as browser:
        log_in(browser, sqlite_stack.public_url, "cleo")
        answer = browser.get(f"{sqlite_stack.public_url}/hub/logout")
        assert (answer.status_code, answer.headers["location"]) == (302, f"{auth2_url}/logout")


def test_a_user_whose_role_is_taken_away_cannot_log_in_again_also_after_a_restart(
    sqlite_stack: HubStack,  # noqa: F811
) -> None:
    """JupyterHub's `allow_existing_users` (on by default once `allowed_users` is set) would let every
    user in the database back in; KBaseAuthenticator turns it off: the roles decide, before and after a
    restart of the hub."""
    stack = sqlite_stack

    def rory_logs_in() -> httpx.Response:
        with httpx.Client(follow_redirects=False) as browser:
            browser.cookies.set("kbase_session", RORY, domain="127.0.0.1", path="/")
            return browser.get(f"{stack.public_url}/hub/login", headers=FROM_KBASE)

    with hub_with(stack, "c.Authenticator.allowed_users = {'breakglass'}\n"):
        assert rory_logs_in().status_code == 302
        AUTH2.set_roles("rory", [])
        refused = rory_logs_in()
        assert refused.status_code == 403
        assert "none of the roles this hub needs" in shown_text(refused)
        stack.stop_hub()
        stack.start_hub()
        refused = rory_logs_in()
        assert refused.status_code == 403, "a user without the role logs in after the restart"
        assert "none of the roles this hub needs" in shown_text(refused)
