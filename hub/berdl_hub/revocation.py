"""The hub's check of every user with a running server: a login that has ended stops their servers.

A failed refresh only refuses a user's next request to the hub. A running server keeps its token, its
MinIO keys and its Spark cluster; open kernel and terminal websockets, and HubOAuth's cache in the
server, keep access; a busy kernel even counts as activity for the idle culler. So every
`revocation_check_interval` seconds the hub judges the stored token of each user with a running server
(`KBaseAuthenticator.judge_stored`, the check of a refresh, with the stored token only: no request, no
cookie), whether or not the user makes requests, and stops every server of a user whose login has ended:
revoked, expired (known without asking Auth2), or no longer meeting the role or MFA rules. An Auth2
outage stops nothing: it says nothing about the user. A good check renews the stored state (its roles and
`checked_at`, from which the outage grace of refreshes counts).

It runs in the hub's own process, on its event loop: a service would need `admin:auth_state`, which reads
every user's token. Its Auth2 calls are bounded: one check per user a round, at most CONCURRENT at a time,
each within `auth_request_timeout`; a round never overlaps the next.

Stopping a server is JupyterHub's own stop (its route, then `User.stop`: the spawner's stop deletes the
pod, the credentials Secret and the user's share of the Spark cluster). The hub's log says why in one
line; the user's next request to the hub checks the login again, and the login page says what to do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tornado.ioloop import PeriodicCallback

from berdl_hub import metrics, upstream

if TYPE_CHECKING:
    from berdl_hub.auth import KBaseAuthenticator, Verdict

#: Users checked at the same time (each check is two Auth2 calls).
CONCURRENT = 4


class RevocationCheck:
    """The periodic check of one hub (see the module's description)."""

    def __init__(self, app: Any, authenticator: KBaseAuthenticator) -> None:
        self.app = app
        self.authenticator = authenticator
        self.log: logging.Logger = authenticator.log
        self._round: asyncio.Task[None] | None = None

    def tick(self) -> None:
        """Start a round unless the last one is still running (PeriodicCallback's callback)."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self.round())

    async def round(self) -> None:
        users = upstream.users_with_servers(self.app)
        limit = asyncio.Semaphore(CONCURRENT)

        async def one(user: Any) -> None:
            async with limit:
                try:
                    await self.check(user)
                except Exception:
                    self.log.exception("The revocation check of %s failed", user.name)

        await asyncio.gather(*(one(user) for user in users))

    async def check(self, user: Any) -> None:
        from berdl_hub.auth import TOKEN_KEY, Outcome  # auth.py starts this module

        state = await user.get_auth_state() or {}
        if not state.get(TOKEN_KEY):
            # Nothing to check: a hub that cannot read the auth state (a lost crypt key), or a server an
            # admin started for a user who never logged in, says nothing about the user's KBase login.
            self.log.debug("No stored KBase token of %s to check", user.name)
            return
        verdict = await self.authenticator.judge_stored(user.name, state)
        if verdict.outcome is Outcome.VALID:
            assert verdict.authentication is not None
            await user.save_auth_state({**state, **verdict.authentication["auth_state"]})
        elif verdict.outcome is Outcome.ENDED:
            await self.end(user, verdict)

    async def end(self, user: Any, verdict: Verdict) -> None:
        running = [name for name, s in upstream.active_servers(user).items() if not s.pending]
        if not running:
            return
        names = ", ".join(f"{user.name}:{name}" if name else user.name for name in running)
        self.log.warning("Stopping the servers of %s (%s): %s", user.name, names, verdict.reason)
        upstream.refresh_at_next_request(user)
        stopped = await asyncio.gather(*(upstream.stop_server(self.app, user, name) for name in running))
        for _ in filter(None, stopped):  # a server that another stop reached first is that stop's
            metrics.server_stopped("revocation")


def start(app: Any, authenticator: KBaseAuthenticator) -> RevocationCheck | None:
    """Start the periodic check on the running event loop (none without an interval)."""
    interval = authenticator.revocation_check_interval
    if interval <= 0:
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not a running hub (JupyterHub calls get_handlers from its async start)
        authenticator.log.warning("The revocation check is not started: no event loop runs")
        return None
    check = RevocationCheck(app, authenticator)
    # PeriodicCallback waits one interval before its first call: the hub has found its servers by then.
    PeriodicCallback(check.tick, interval * 1000).start()
    return check
