"""The notebook image's berdl_token_sync (images/notebook), here without the image: the token file, the
forwarder's rules (the owner's own cookie only, once, adopted after the hub's yes), the server
extension's glue against a hub stand-in on 127.0.0.1, and a real IPython kernel whose environment takes a
renewed token from the file while a cell that started before it runs. The real image, in the real stack,
is tests/e2e/test_journey.py's step 7."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from berdl_token_sync import kernel, server, tokenfile
from berdl_token_sync.forwarder import Forwarder

from localhub.standins.http import serve
from localhub.standins.kbase_auth2 import new_token
from localhub.tools import REPO

OLD, NEW, OTHER = new_token(), new_token(), new_token()


def cookies(**values: str) -> Any:
    return values.get


# --- the file ---------------------------------------------------------------------------------------


def test_the_file_is_written_whole_with_mode_0600(tmp_path: Path) -> None:
    (tmp_path / tokenfile.FILE_NAME).write_text("an older token\n")
    (tmp_path / tokenfile.FILE_NAME).chmod(0o644)
    tokenfile.write(tmp_path, NEW)
    path = tmp_path / tokenfile.FILE_NAME
    assert path.read_text() == NEW + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a new file, not the old one's mode
    assert [p.name for p in tmp_path.iterdir()] == [tokenfile.FILE_NAME]  # no temporary left
    assert tokenfile.read(tmp_path) == NEW
    with pytest.raises(ValueError, match="not a KBase token"):
        tokenfile.write(tmp_path, "A" * 9000)


def test_what_is_not_a_token_is_not_read(tmp_path: Path) -> None:
    assert tokenfile.read(tmp_path) is None
    (tmp_path / tokenfile.FILE_NAME).write_text("A" * 9000)
    assert tokenfile.read(tmp_path) is None


# --- the forwarder's rules -----------------------------------------------------------------------------


class Hub:
    """What the forwarder sends, and the hub's answer to each (a status, or None: no answer)."""

    def __init__(self, *answers: int | None) -> None:
        self.answers = list(answers)
        self.sent: list[str] = []
        self.adopted: list[str] = []

    async def send(self, token: str) -> int | None:
        self.sent.append(token)
        return self.answers.pop(0)

    def forwarder(self, clock: Any = None) -> Forwarder:
        extra = {"clock": clock} if clock else {}
        return Forwarder("alice", OLD, self.send, self.adopted.append, retry_after=60, **extra)


async def settle(forwarder: Forwarder) -> None:
    if forwarder.task is not None:
        await forwarder.task


@pytest.mark.asyncio
async def test_only_the_owners_renewed_token_is_forwarded_and_adopted_after_the_hubs_yes() -> None:
    hub = Hub(200)
    forwarder = hub.forwarder()
    forwarder.saw("user", "ada", cookies(kbase_session=OTHER))  # an admin who opens alice's server
    forwarder.saw("service", "alice", cookies(kbase_session=OTHER))  # a service of that name
    forwarder.saw("user", "alice", cookies(kbase_session="A" * 9000))  # not a token
    forwarder.saw("user", "alice", cookies(kbase_session=OLD))  # the token she has
    forwarder.saw("user", "alice", cookies())  # no cookie
    await settle(forwarder)
    assert hub.sent == []
    forwarder.saw("user", "alice", cookies(kbase_session_backup=NEW))
    forwarder.saw("user", "alice", cookies(kbase_session=NEW))  # while the first is on its way
    await settle(forwarder)
    assert (hub.sent, hub.adopted, forwarder.current) == ([NEW], [NEW], NEW)
    forwarder.saw("user", "alice", cookies(kbase_session=NEW))
    await settle(forwarder)
    assert hub.sent == [NEW]


@pytest.mark.asyncio
async def test_a_refused_token_is_never_sent_again_and_an_outage_waits() -> None:
    now = [0.0]
    hub = Hub(403, None, 503, 200)
    forwarder = hub.forwarder(clock=lambda: now[0])
    for _ in range(3):
        forwarder.saw("user", "alice", cookies(kbase_session=OTHER))  # bob's login in alice's browser
        await settle(forwarder)
    assert hub.sent == [OTHER]
    forwarder.saw("user", "alice", cookies(kbase_session=NEW))  # no answer: wait retry_after
    await settle(forwarder)
    forwarder.saw("user", "alice", cookies(kbase_session=NEW))
    await settle(forwarder)
    assert hub.sent == [OTHER, NEW]
    now[0] = 61
    forwarder.saw("user", "alice", cookies(kbase_session=NEW))  # 503: wait again
    await settle(forwarder)
    now[0] = 122
    forwarder.saw("user", "alice", cookies(kbase_session=NEW))
    await settle(forwarder)
    assert (hub.sent, hub.adopted) == ([OTHER, NEW, NEW, NEW], [NEW])


# --- the server extension, against a stand-in of the hub's endpoint -----------------------------------


class FakeIdentityProvider:
    def __init__(self, user: Any) -> None:
        self.user = user

    async def get_user(self, handler: Any) -> Any:
        return self.user


class FakeServerApp:
    def __init__(self, user: Any) -> None:
        self.identity_provider = FakeIdentityProvider(user)


class HubUser:
    def __init__(self, name: str, kind: str = "user") -> None:
        self.hub_user = {"name": name, "kind": kind}


class Request:
    def __init__(self, **values: str) -> None:
        self.get_cookie = cookies(**values)


@pytest_asyncio.fixture
async def hub_endpoint() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """The hub's token_refresh endpoint: yes to NEW, no to anything else; what it was sent, and how."""
    received: list[dict[str, Any]] = []

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.json()
        received.append({"authorization": request.headers.get("Authorization"), **body})
        return (
            web.json_response({"accepted": True})
            if body["token"] == NEW
            else web.json_response({}, status=403)
        )

    app = web.Application()
    app.router.add_post("/hub/api/berdl/kbase-token", endpoint)
    async with serve(app) as base:
        yield f"{base}/hub/api", received


@pytest.mark.asyncio
async def test_the_extension_writes_the_start_token_then_forwards_and_adopts_a_renewed_one(
    hub_endpoint: tuple[str, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_url, received = hub_endpoint
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in {
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_API_TOKEN": "server-api-token",
        "KBASE_AUTH_TOKEN": OLD,
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / tokenfile.FILE_NAME).write_text(OTHER)  # what an older server left
    app = FakeServerApp(HubUser("alice"))
    server._load_jupyter_server_extension(app)
    assert tokenfile.read(tmp_path) == OLD  # the token the server was started with

    assert (await app.identity_provider.get_user(Request(kbase_session=NEW))).hub_user["name"] == "alice"
    for _ in range(100):
        if tokenfile.read(tmp_path) == NEW:
            break
        await asyncio.sleep(0.05)
    assert tokenfile.read(tmp_path) == NEW
    assert stat.S_IMODE((tmp_path / tokenfile.FILE_NAME).stat().st_mode) == 0o600
    assert os.environ["KBASE_AUTH_TOKEN"] == NEW  # kernels and terminals started from now on
    assert received == [{"authorization": "token server-api-token", "token": NEW}]

    # A visitor's cookie is not forwarded; a token the hub refuses is not adopted.
    app.identity_provider.user = HubUser("ada")
    await app.identity_provider.get_user(Request(kbase_session=OTHER))
    app.identity_provider.user = HubUser("alice")
    await app.identity_provider.get_user(Request(kbase_session=OTHER))
    for _ in range(100):
        if len(received) == 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert [entry["token"] for entry in received] == [NEW, OTHER]
    assert tokenfile.read(tmp_path) == NEW


def test_outside_a_hub_the_extension_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    app = FakeServerApp(HubUser("alice"))
    original = app.identity_provider.get_user
    server._load_jupyter_server_extension(app)
    assert app.identity_provider.get_user == original
    assert list(tmp_path.iterdir()) == []


# --- the kernel ---------------------------------------------------------------------------------------


def test_sync_once_takes_a_token_from_the_file_and_clears_berdls_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    cleared: list[bool] = []
    utilities = types.ModuleType("berdl_notebook_utils.kbase_token_cache")
    utilities.clear_berdl_token_caches = lambda: cleared.append(True)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "berdl_notebook_utils", types.ModuleType("berdl_notebook_utils"))
    monkeypatch.setitem(sys.modules, "berdl_notebook_utils.kbase_token_cache", utilities)
    monkeypatch.setenv("KBASE_AUTH_TOKEN", OLD)
    assert kernel.sync_once(tmp_path) is False  # no file
    (tmp_path / tokenfile.FILE_NAME).write_text("junk")
    assert kernel.sync_once(tmp_path) is False
    tokenfile.write(tmp_path, NEW)
    assert kernel.sync_once(tmp_path) is True
    assert (os.environ["KBASE_AUTH_TOKEN"], cleared) == (NEW, [True])
    assert kernel.sync_once(tmp_path) is False


@pytest.mark.slow
def test_a_cell_that_started_before_the_renewal_sees_the_new_token(tmp_path: Path) -> None:
    """A real ipykernel, with the notebook image's kernel config (its extension appended), in a home
    whose file is renewed while a cell waits for the environment to change."""
    from jupyter_client.manager import start_new_kernel

    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        (REPO / "images" / "notebook" / "ipython_kernel_config.py").read_text()
    )
    tokenfile.write(tmp_path, OLD)
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH")},
        "HOME": str(tmp_path),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "KBASE_AUTH_TOKEN": OLD,
        "KBASE_TOKEN_SYNC_SECONDS": "0.2",
    }
    manager, client = start_new_kernel(env=env)
    try:
        digest = lambda token: hashlib.sha256(token.encode()).hexdigest()  # noqa: E731
        waiting = (
            "import hashlib, os, time, json\n"
            "before = os.environ['KBASE_AUTH_TOKEN']\n"
            "print('waiting', flush=True)\n"
            "for _ in range(600):\n"
            "    if os.environ['KBASE_AUTH_TOKEN'] != before: break\n"
            "    time.sleep(0.1)\n"
            "print(json.dumps(hashlib.sha256(os.environ['KBASE_AUTH_TOKEN'].encode()).hexdigest()))"
        )
        message_id = client.execute(waiting)
        printed = ""
        while True:
            reply = client.get_iopub_msg(timeout=90)
            if reply["parent_header"].get("msg_id") != message_id:
                continue
            if reply["msg_type"] == "stream":
                printed += reply["content"]["text"]
                if printed == "waiting\n":  # the cell runs: now the server writes the renewed token
                    tokenfile.write(tmp_path, NEW)
            if reply["msg_type"] == "status" and reply["content"]["execution_state"] == "idle":
                break
        assert json.loads(printed.splitlines()[-1]) == digest(NEW)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
