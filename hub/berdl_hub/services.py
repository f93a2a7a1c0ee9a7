"""Async clients of the Spark Cluster Manager API and the data-governance API.

Every call is bounded: one overall deadline per attempt (`asyncio.wait_for`, covering the connection, the
request and the whole body), and retries only for idempotent calls (DELETE, GET), so a slow or dead
service costs a spawn a known number of seconds and never blocks the hub's event loop.

The HTTP client is aiohttp's (already in the hub for kubernetes_asyncio): with hundreds of spawns at once,
httpx/httpcore spent most of the hub's CPU on its connection pool (work growing with the square of the
open connections) and on a failed `import sniffio` per connection, enough to stall the event loop.

The user's token is sent only in the `Authorization` header and never appears in a message or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

# Answers worth another try of an idempotent call: the service or a gateway in front of it was busy.
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class ServiceError(Exception):
    """A call to a BERDL service failed; `str()` is safe to show the user and to log.

    kind: "http" (an error answer), "timeout", "connect" (refused or unreachable), "protocol" (an
    answer that does not follow the API, or a connection lost before the answer was complete).
    """

    def __init__(self, service: str, kind: str, detail: str, status: int | None = None) -> None:
        self.service = service
        self.kind = kind
        self.status = status
        self.detail = detail
        super().__init__(f"{service}: {detail}")

    @property
    def may_have_acted(self) -> bool:
        """Whether the service may have done the work although the call failed (time-out, 5xx)."""
        return self.kind in ("timeout", "protocol") or (self.status is not None and self.status >= 500)


@dataclass(frozen=True)
class Bounds:
    """Limits for one service: seconds per attempt, attempts for idempotent calls, first back-off."""

    timeout: float = 30.0
    attempts: int = 3
    backoff: float = 0.5


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: status, reason and the whole body, read within the deadline."""

    status_code: int
    reason_phrase: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# One client per event loop, shared by every spawner: its connection pool keeps connections alive
# between calls, so spawns do not each pay a new connection (and, with https, a TLS handshake).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


def shared_client() -> aiohttp.ClientSession:
    """The HTTP client of the running loop (created on first use, reused by all spawners)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.closed:
        client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500))
        _clients[loop] = client
    return client


async def close_shared_client() -> None:
    """Close the running loop's client (at shutdown, and between tests)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.close()


async def _exchange(method: str, url: str, headers: Mapping[str, str], json_body: Any = None) -> Answer:
    """One request on the shared client; returns once the whole body is in."""
    async with shared_client().request(method, url, headers=dict(headers), json=json_body) as response:
        return Answer(response.status, response.reason or "", await response.read())


def _error_detail(response: Answer) -> str:
    """`error_type: message` from the APIs' shared error body, else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        error_type = body.get("error_type")
        message = body.get("message") or body.get("detail")
        if message:
            text = f"{error_type}: {message}" if error_type else str(message)
            return f"answered {response.status_code} ({text[:300]})"
    return f"answered {response.status_code} {response.reason_phrase}"


async def _send(
    service: str,
    request: Callable[[], Awaitable[Answer]],
    bounds: Bounds,
    *,
    idempotent: bool,
) -> Answer:
    """Run `request` under the deadline, retrying when it is safe to."""
    attempts = bounds.attempts if idempotent else 1
    last: ServiceError | None = None
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            response = await asyncio.wait_for(request(), bounds.timeout)
        except asyncio.TimeoutError:  # aiohttp's own time-outs are asyncio.TimeoutError too
            last = ServiceError(service, "timeout", f"no answer within {bounds.timeout:g} s")
        except aiohttp.ClientConnectorError:
            last = ServiceError(service, "connect", "cannot be reached (connection refused or no route)")
        except aiohttp.ClientError as exc:
            last = ServiceError(service, "protocol", f"broken exchange ({type(exc).__name__})")
        else:
            if response.status_code < 400:
                return response
            last = ServiceError(service, "http", _error_detail(response), response.status_code)
            if response.status_code not in RETRY_STATUSES:
                raise last
        if attempt < attempts:
            log.warning("%s, attempt %d of %d; retrying", last, attempt, attempts)
            await asyncio.sleep(bounds.backoff * 2 ** (attempt - 1))
    assert last is not None
    raise last


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class SparkCluster:
    """What `POST /clusters` answered (201)."""

    cluster_id: str
    master_url: str
    master_ui_url: str


class SparkClusterManager:
    """Client of the Spark Cluster Manager API (one personal cluster per user, keyed by the token)."""

    service = "Spark Cluster Manager"

    def __init__(self, base_url: str, create: Bounds, delete: Bounds) -> None:
        self.base_url = base_url.rstrip("/")
        self.create_bounds = create
        self.delete_bounds = delete

    async def create(self, token: str, config: Mapping[str, Any]) -> SparkCluster:
        """`POST /clusters`; not retried, because a second POST may build a second cluster."""
        url = f"{self.base_url}/clusters"
        response = await _send(
            self.service,
            lambda: _exchange("POST", url, _bearer(token), dict(config)),
            self.create_bounds,
            idempotent=False,
        )
        if response.status_code != 201:
            raise ServiceError(self.service, "protocol", f"answered {response.status_code}, expected 201")
        try:
            body = response.json()
            return SparkCluster(
                cluster_id=str(body["cluster_id"]),
                master_url=str(body["master_url"]),
                master_ui_url=str(body.get("master_ui_url", "")),
            )
        except (ValueError, KeyError, TypeError):
            raise ServiceError(self.service, "protocol", "answered 201 without a master_url") from None

    async def delete(self, token: str) -> str:
        """`DELETE /clusters`; 200 also when there was nothing to delete. Returns the service's message."""
        url = f"{self.base_url}/clusters"
        response = await _send(
            self.service,
            lambda: _exchange("DELETE", url, _bearer(token)),
            self.delete_bounds,
            idempotent=True,
        )
        try:
            return str(response.json().get("message", ""))
        except (ValueError, AttributeError):
            return ""


@dataclass(frozen=True)
class MinioCredentials:
    username: str
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never print the keys, even in a debugger or a traceback
        return f"MinioCredentials(username={self.username!r}, access_key=***, secret_key=***)"


class GovernanceClient:
    """Client of the data-governance API: the user's MinIO credentials."""

    service = "Data governance API"

    def __init__(self, base_url: str, bounds: Bounds) -> None:
        self.base_url = base_url.rstrip("/")
        self.bounds = bounds

    async def credentials(self, token: str) -> MinioCredentials:
        """`GET /credentials/`: `{"username", "access_key", "secret_key"}`."""
        url = f"{self.base_url}/credentials/"
        response = await _send(
            self.service,
            lambda: _exchange("GET", url, _bearer(token)),
            self.bounds,
            idempotent=True,
        )
        try:
            body = response.json()
            return MinioCredentials(
                username=str(body["username"]),
                access_key=str(body["access_key"]),
                secret_key=str(body["secret_key"]),
            )
        except (ValueError, KeyError, TypeError):
            raise ServiceError(self.service, "protocol", "answered without MinIO credentials") from None


def spark_manager(
    url: str, *, create_timeout: float, request_timeout: float, attempts: int
) -> SparkClusterManager | None:
    """The Spark Cluster Manager's client (None without a URL): a create is tried once, since a second
    POST could build a second cluster; a delete is retried, it is idempotent."""
    if not url:
        return None
    return SparkClusterManager(
        url,
        create=Bounds(timeout=create_timeout, attempts=1),
        delete=Bounds(timeout=request_timeout, attempts=attempts),
    )


def governance(url: str, *, timeout: float, attempts: int) -> GovernanceClient | None:
    """The governance API's client (None without a URL)."""
    return GovernanceClient(url, Bounds(timeout=timeout, attempts=attempts)) if url else None
