"""The browser of the journey on its own: playwright drives Debian's chromium through the KBase login
stand-in's page, with no stack around it (no podman, no hub), so that scripts/test-fresh-machine can run
it on a new machine: playwright's driver starts, chromium starts, a person's click signs them in."""

from __future__ import annotations

from localhub.browser import chromium
from localhub.standins.kbase_auth2 import KBaseAuth2, serve_in_thread


def test_a_click_on_the_login_page_signs_alice_in() -> None:
    auth2 = KBaseAuth2()
    auth2.add_user("alice")
    auth2.add_user("bob")
    with serve_in_thread(auth2.app()) as base, chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base}/login?redirect=/login")
        buttons = page.get_by_role("button")
        assert buttons.all_inner_texts() == ["Log in as alice", "Log in as bob"]

        page.get_by_role("button", name="Log in as alice").click()
        page.wait_for_url(f"{base}/login")

        (session,) = [c["value"] for c in page.context.cookies() if c["name"] == "kbase_session"]
        assert auth2.tokens[session].user == "alice"
        assert session == auth2.accounts["alice"].current_token
