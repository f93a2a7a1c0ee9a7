"""The Spark Cluster Manager API as its OpenAPI spec describes it
(docs/services.md): 201 with `master_url` on create, 200 on delete
also when there is nothing to delete, errors as `{error, error_type, message}`."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from localhub.standins.http import bearer_token
from localhub.standins.http import error as _error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def spark_app(create: Handler, delete: Handler) -> web.Application:
    """The manager's routes: POST and DELETE /clusters (the caller's one cluster), and its health check."""
    app = web.Application()
    app.router.add_post("/clusters", create)
    app.router.add_delete("/clusters", delete)
    app.router.add_get("/health", _health)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy"})


def cluster_created(cluster_id: str) -> dict[str, str]:
    """What the manager answers (201) for a cluster it created."""
    return {
        "cluster_id": cluster_id,
        "master_url": f"spark://spark-master-{cluster_id}:7077",
        "master_ui_url": f"http://spark-master-{cluster_id}:8090",
    }


CLUSTER_LIMITS = {"worker_count": (1, 25), "worker_cores": (1, 64), "master_cores": (1, 64)}


@dataclass
class SparkClusterManagerApp:
    """A Spark Cluster Manager: one cluster per token. `mode` makes POST misbehave on purpose.

    The users' tokens (and the clusters filed under them) stay out of the repr, which pytest prints
    when an assertion about this object fails."""

    tokens: set[str] = field(repr=False)
    mode: str = "ok"  # ok | 500 | 401 | timeout
    delay: float = 0.0  # seconds before every answer
    hang: float = 30.0  # how long "timeout" keeps a POST waiting
    clusters: dict[str, str] = field(default_factory=dict, repr=False)  # token -> cluster id
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0
    deleted: int = 0
    in_flight: int = 0
    max_in_flight: int = 0  # the most requests this server was answering at one time
    #: A newer token of a user -> the token the user's cluster is filed under: the manager asks Auth2
    #: whose a token is, so every token of one user reaches the user's one cluster.
    aliases: dict[str, str] = field(default_factory=dict, repr=False)

    def app(self) -> web.Application:
        return spark_app(self._create, self._delete)

    def alias(self, newer: str, first: str) -> None:
        """`newer` is another token of the user whose token `first` is."""
        self.aliases[newer] = first

    def _token(self, request: web.Request) -> str | None:
        token = bearer_token(request)
        token = self.aliases.get(token, token) if token else token
        return token if token in self.tokens else None

    async def _create(self, request: web.Request) -> web.Response:
        self.calls.append(("POST", request.path))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        token = self._token(request)
        if self.mode == "401" or token is None:
            return _error(401, "AuthenticationError", "Invalid or expired token")
        body = await request.json()
        self.bodies.append(body)
        beyond = [key for key, (low, high) in CLUSTER_LIMITS.items() if not low <= body.get(key, low) <= high]
        if beyond:
            return _error(400, "ValidationError", f"{', '.join(beyond)} beyond the allowed range")
        if self.mode == "timeout":
            # The cluster gets built, but the answer comes too late: the caller must clean up.
            self.clusters[token] = f"cluster-{secrets.token_hex(4)}"
            self.created += 1
            await asyncio.sleep(self.hang)
        if self.mode == "500":
            # Half-built: the manager created the deployments, then failed.
            self.clusters[token] = f"cluster-{secrets.token_hex(4)}"
            self.created += 1
            return _error(500, "ClusterCreationError", "Failed to create the Spark master service")
        cluster_id = f"cluster-{secrets.token_hex(4)}"
        self.clusters[token] = cluster_id
        self.created += 1
        return web.json_response(cluster_created(cluster_id), status=201)

    async def _delete(self, request: web.Request) -> web.Response:
        self.calls.append(("DELETE", request.path))
        await asyncio.sleep(self.delay)
        token = self._token(request)
        if token is None:
            return _error(401, "AuthenticationError", "Invalid or expired token")
        if self.clusters.pop(token, None) is None:
            return web.json_response({"message": "No Spark cluster to delete"})
        self.deleted += 1
        return web.json_response({"message": "Spark cluster deleted"})
