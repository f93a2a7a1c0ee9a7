"""The data-governance API: `GET /credentials/` answering `{username, access_key, secret_key}`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from localhub.standins.http import bearer_token
from localhub.standins.http import error as _error


def governance_app(credentials: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    """The API's one route a hub calls: GET /credentials/, the caller's MinIO keys."""
    app = web.Application()
    app.router.add_get("/credentials/", credentials)
    return app


@dataclass
class GovernanceApp:
    """The data-governance API: MinIO credentials per token (out of the repr, as above)."""

    credentials: dict[str, dict[str, str]] = field(repr=False)
    mode: str = "ok"  # ok | 500
    calls: int = 0

    def app(self) -> web.Application:
        return governance_app(self._credentials)

    async def _credentials(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.mode == "500":
            return _error(500, "InternalError", "credential store unavailable")
        token = bearer_token(request)
        if token not in self.credentials:
            return _error(401, "AuthenticationError", "Invalid token")
        return web.json_response(self.credentials[token])
