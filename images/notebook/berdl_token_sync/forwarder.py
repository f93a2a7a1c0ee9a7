"""What the server does with the cookies of each authenticated request: forward its owner's renewed
KBase token to the hub, once, and adopt it once the hub said yes. No Jupyter import: `server` plugs it in.

- only the owner's own requests count (`kind` "user", name `owner`): an admin or a user a server was
  shared with who opens it sends their own cookies;
- only a value in KBase's token form, and only one that differs from the token the server holds;
- one forward at a time; a token the hub refused (400, 403) is never sent again; after an outage (503),
  a bound (429) or no answer, nothing is sent for `retry_after` seconds;
- `adopt` runs only after the hub's 200.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

from .tokenfile import is_token

COOKIES = ("kbase_session", "kbase_session_backup")
#: Refused tokens remembered (by digest); the oldest is forgotten first.
MAX_REFUSED = 64

log = logging.getLogger("berdl_token_sync")


class Forwarder:
    def __init__(
        self,
        owner: str,
        current: str | None,
        send: Callable[[str], Awaitable[int | None]],
        adopt: Callable[[str], None],
        *,
        retry_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner = owner
        self.current = current
        self.send = send  # the hub's status for a forwarded token, None without an answer
        self.adopt = adopt
        self.retry_after = retry_after
        self.clock = clock
        self.refused: list[str] = []
        self.not_before = 0.0
        self.task: asyncio.Task[None] | None = None

    def saw(self, kind: str | None, name: str | None, cookie: Callable[[str], str | None]) -> None:
        """A request of `name` (a `kind`: user or service) authenticated; `cookie(NAME)` reads its cookies."""
        if kind != "user" or name != self.owner:
            return
        token = next((value for value in map(cookie, COOKIES) if is_token(value)), None)
        if token is None or token == self.current:
            return
        if _digest(token) in self.refused or self.clock() < self.not_before:
            return
        if self.task is not None and not self.task.done():
            return
        self.task = asyncio.ensure_future(self.forward(token))

    async def forward(self, token: str) -> None:
        try:
            status = await self.send(token)
        except Exception as error:  # the message of an HTTP client's error names no token
            log.warning("Could not forward a renewed KBase token to the hub: %s", type(error).__name__)
            status = None
        if status == 200:
            self.current = token
            self.adopt(token)
            log.info("The hub accepted the renewed KBase token of %s", self.owner)
        elif status in (400, 403):
            self.refused = [*self.refused, _digest(token)][-MAX_REFUSED:]
            log.warning("The hub refused a KBase token in the browser of %s (%s)", self.owner, status)
        else:
            self.not_before = self.clock() + self.retry_after
            log.warning("The hub could not take a renewed KBase token now (%s); trying again later", status)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
