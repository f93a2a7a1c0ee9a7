"""The Auth2 stand-in follows docs/services.md: what the hub and the e2e stack rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from localhub.standins.kbase_auth2 import TOKEN_FORM, KBaseAuth2, new_token, serve_in_thread

REPO = Path(__file__).resolve().parents[2]
async_test = pytest.mark.asyncio


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[KBaseAuth2, str]]:
    auth2 = KBaseAuth2()
    server = TestServer(auth2.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield auth2, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def get(url: str, token: str | None) -> tuple[int, object]:
    headers = {"Authorization": token} if token is not None else {}
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as answer:
        return answer.status, await answer.json(content_type=None)


@async_test
async def test_token_and_me_answer_as_the_reference_says(served: tuple[KBaseAuth2, str]) -> None:
    auth2, base = served
    token = auth2.add_user("alice", customroles=["BERDL_USER"], mfa="NotUsed")
    status, info = await get(f"{base}/services/auth/api/V2/token", token)
    assert status == 200
    assert isinstance(info, dict)
    assert info["user"] == "alice"
    assert info["mfa"] == "NotUsed"
    assert info["cachefor"] == 300_000
    assert info["expires"] > info["created"]
    status, me = await get(f"{base}/services/auth/api/V2/me", token)
    assert (status, me["customroles"]) == (200, ["BERDL_USER"])  # type: ignore[index]


@async_test
async def test_errors_have_auth2s_shape_and_appcodes(served: tuple[KBaseAuth2, str]) -> None:
    auth2, base = served
    token = auth2.add_user("alice")
    auth2.revoke(token)
    expired = auth2.issue_token("alice", expires_in=-1)
    for sent, status, appcode in [(token, 401, 10020), (expired, 401, 10020), ("", 400, 10010)]:
        got, body = await get(f"{base}/services/auth/api/V2/me", sent)
        assert got == status
        assert isinstance(body, dict)
        error = body["error"]
        assert (error["httpcode"], error["appcode"]) == (status, appcode)
        assert error["message"].startswith(str(appcode))


@async_test
async def test_tokens_are_in_kbases_form_and_no_other_is_issued(served: tuple[KBaseAuth2, str]) -> None:
    auth2, _ = served
    assert TOKEN_FORM.fullmatch(auth2.add_user("alice"))
    assert TOKEN_FORM.fullmatch(auth2.issue_token("alice"))
    with pytest.raises(ValueError, match="base32"):
        auth2.issue_token("alice", token="kbase-" + "0" * 26)


@async_test
async def test_a_fault_for_some_tokens_leaves_the_others_answered(served: tuple[KBaseAuth2, str]) -> None:
    auth2, base = served
    hit, spared = auth2.add_user("alice"), auth2.add_user("bob")
    auth2.fault, auth2.fault_only_for = "500", {hit}
    url = f"{base}/services/auth/api/V2/token"
    assert (await get(url, hit))[0] == 500
    assert (await get(url, spared))[0] == 200


@async_test
async def test_headers_over_8_kib_get_a_400_without_json(served: tuple[KBaseAuth2, str]) -> None:
    """What a front end with the common 8 KiB header limit answers (aiohttp's parser does the same)."""
    _, base = served
    async with aiohttp.ClientSession() as client:
        headers = {"Authorization": "A" * 9000}
        async with client.get(f"{base}/services/auth/api/V2/token", headers=headers) as answer:
            assert answer.status == 400
            assert answer.content_type != "application/json"


@async_test
async def test_fault_modes(served: tuple[KBaseAuth2, str]) -> None:
    auth2, base = served
    token = auth2.add_user("alice")
    url = f"{base}/services/auth/api/V2/token"
    auth2.fault = "500"
    assert (await get(url, token))[0] == 500
    auth2.fault = "non-json"
    async with aiohttp.ClientSession() as client, client.get(url, headers={"Authorization": token}) as answer:
        assert answer.status == 200
        assert answer.content_type == "text/html"
    auth2.fault = "down"
    with pytest.raises(aiohttp.ClientError):
        await get(url, token)
    auth2.fault = "slow"
    auth2.slow_seconds = 5
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        with pytest.raises(TimeoutError):
            await client.get(url, headers={"Authorization": token})


def test_login_page_sets_the_cookie_and_comes_back(tmp_path: Path) -> None:
    auth2 = KBaseAuth2()
    token = auth2.add_user("alice")
    auth2.add_user("bob")
    with serve_in_thread(auth2.app()) as base, httpx.Client(follow_redirects=False) as browser:
        back = "http://127.0.0.1:1/hub/login?next=%2Fhub%2Fhome"
        page = browser.get(f"{base}/login", params={"redirect": back})
        assert page.status_code == 200
        assert 'value="alice"' in page.text
        assert 'value="bob"' in page.text
        answer = browser.post(f"{base}/login", data={"user": "alice", "redirect": back})
        assert answer.status_code == 303
        assert answer.headers["location"] == back
        assert browser.cookies.get("kbase_session", domain="127.0.0.1", path="/") == token
        assert "Domain" not in answer.headers["set-cookie"]
        refused = browser.get(f"{base}/login", params={"redirect": "https://evil.example/"})
        assert refused.status_code == 400

        assert browser.get(f"{base}/logout", params={"redirect": "/login"}).status_code == 303
        assert auth2.tokens[token].revoked
        again = browser.post(f"{base}/login", data={"user": "alice", "redirect": "/login"})
        new_token = again.cookies["kbase_session"]
        assert new_token != token
        assert auth2.accounts["alice"].current_token == new_token


def test_runs_as_a_process_from_a_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    fixed = new_token()
    users.write_text(json.dumps({"alice": {"customroles": ["BERDL_USER"], "token": fixed}}))
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "localhub.standins.kbase_auth2",
        "--port",
        str(port),
        "--users-file",
        str(users),
    ]
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == f"kbase-auth2 stand-in: http://127.0.0.1:{port}/services/auth/\n"
        me = httpx.get(f"{line.split(': ', 1)[1].strip()}api/V2/me", headers={"Authorization": fixed})
        assert me.json()["customroles"] == ["BERDL_USER"]
    finally:
        process.terminate()
        assert process.wait(30) == 0


def test_a_bad_users_file_is_one_clear_line(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"alice": {"mfa": "Sometimes"}}))
    cmd = [sys.executable, "-m", "localhub.standins.kbase_auth2", "--port", "1", "--users-file", str(users)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "mfa must be one of" in result.stderr
    assert "Traceback" not in result.stderr
