"""Serving a stand-in's aiohttp app on 127.0.0.1, and the error body the BERDL services answer with."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestServer


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, as the BERDL services read it."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme == "Bearer" and token else None


def error(status: int, error_type: str, message: str) -> web.Response:
    """An error as the Spark Cluster Manager and the governance API answer one."""
    return web.json_response({"error": status, "error_type": error_type, "message": message}, status=status)


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free 127.0.0.1 port; yields its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
