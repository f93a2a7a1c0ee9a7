"""The revocation check's round (revocation.RevocationCheck) on stand-ins of the hub's application and
users, with a real KBaseAuthenticator against the Auth2 stand-in: which users' servers it stops, and
which it leaves. The real hub's is tests/hub/test_token_refresh.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from berdl_hub import metrics  # noqa: F401  (registers the berdl_* series)
from berdl_hub.auth import KBaseAuthenticator
from berdl_hub.revocation import RevocationCheck
from berdl_hub.services import close_shared_client
from prometheus_client import REGISTRY

from localhub.standins.http import serve
from localhub.standins.kbase_auth2 import APPROVED_ROLE, KBaseAuth2

pytestmark = pytest.mark.asyncio


@dataclass
class Server:
    active: bool = True
    pending: str | None = None


@dataclass
class User:
    name: str
    auth_state: dict[str, Any] | None
    spawners: dict[str, Server] = field(default_factory=lambda: {"": Server(), "lab": Server()})
    stopped: list[str] = field(default_factory=list)
    _auth_refreshed: float | None = 1.0

    async def get_auth_state(self) -> dict[str, Any] | None:
        return self.auth_state

    async def save_auth_state(self, state: dict[str, Any]) -> None:
        self.auth_state = state

    async def stop(self, name: str) -> None:
        self.stopped.append(name)
        self.spawners[name].active = False


@dataclass
class Proxy:
    deleted: list[tuple[str, str]] = field(default_factory=list)

    async def delete_user(self, user: User, name: str) -> None:
        self.deleted.append((user.name, name))


@dataclass
class App:
    users: dict[int, User]
    proxy: Proxy = field(default_factory=Proxy)


@pytest_asyncio.fixture
async def auth2() -> AsyncIterator[tuple[KBaseAuth2, KBaseAuthenticator]]:
    stand_in = KBaseAuth2()
    async with serve(stand_in.app()) as base:
        authenticator = KBaseAuthenticator(
            auth_url=f"{base}/services/auth", approved_roles=[APPROVED_ROLE], auth_request_timeout=2.0
        )
        yield stand_in, authenticator
    await close_shared_client()


def stops_by_revocation() -> float:
    return REGISTRY.get_sample_value("berdl_server_stops_total", {"by": "revocation"}) or 0.0


def logged_in(auth2: KBaseAuth2, name: str, **account: Any) -> User:
    token = auth2.add_user(name, customroles=[APPROVED_ROLE], **account)
    state = {"kbase_token": token, "token_expires": time.time() + 3600, "checked_at": time.time()}
    return User(name, state)


async def test_a_round_stops_the_ended_logins_only(
    auth2: tuple[KBaseAuth2, KBaseAuthenticator], caplog: pytest.LogCaptureFixture
) -> None:
    stand_in, authenticator = auth2
    kept, revoked, role_lost, expired, unknown = (
        logged_in(stand_in, name) for name in ("kept", "revoked", "role_lost", "expired", "unknown")
    )
    stand_in.revoke(revoked.auth_state["kbase_token"])  # type: ignore[index]
    stand_in.set_roles("role_lost", [])
    expired.auth_state["token_expires"] = time.time() - 1  # type: ignore[index]
    stand_in.fault, stand_in.fault_only_for = "500", {unknown.auth_state["kbase_token"]}  # type: ignore[index]
    never_logged_in = User("never", None)
    starting = logged_in(stand_in, "starting")
    stand_in.revoke(starting.auth_state["kbase_token"])  # type: ignore[index]
    starting.spawners = {"": Server(pending="spawn")}
    users = [kept, revoked, role_lost, expired, unknown, never_logged_in, starting]
    app = App({n: u for n, u in enumerate(users)})

    stops_before = stops_by_revocation()
    await RevocationCheck(app, authenticator).round()

    assert {u.name: sorted(u.stopped) for u in users} == {
        "kept": [],
        "revoked": ["", "lab"],
        "role_lost": ["", "lab"],
        "expired": ["", "lab"],
        "unknown": [],  # an outage says nothing about the user
        "never": [],  # no stored token: nothing to judge
        "starting": [],  # a server that starts is left to its start (its own checks)
    }
    assert sorted(app.proxy.deleted) == sorted(
        (name, server) for name in ("revoked", "role_lost", "expired") for server in ("", "lab")
    )
    assert stops_by_revocation() - stops_before == 6  # berdl_server_stops{by="revocation"}
    assert revoked._auth_refreshed is None  # the next request checks the login again
    assert kept._auth_refreshed == 1.0
    assert kept.auth_state["checked_at"] > time.time() - 60  # type: ignore[index]  # renewed
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Stopping the servers")]
    assert sorted(lines) == [
        "Stopping the servers of expired (expired, expired:lab): the stored KBase token has expired",
        "Stopping the servers of revoked (revoked, revoked:lab): "
        "Auth2 says the KBase token is invalid, expired or revoked",
        "Stopping the servers of role_lost (role_lost, role_lost:lab): "
        "the KBase account no longer holds a role this hub needs",
    ]
