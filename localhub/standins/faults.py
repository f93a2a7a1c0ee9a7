"""A Spark Cluster Manager and a governance API that fail on purpose, in a process of their own.

`FaultySpark` and `FaultyGovernance` answer on the routes, and in the words, of the stand-ins they build on
(spark.py, governance.py); both misbehave
at chosen rates: delays, 5xx, 4xx, dropped connections (the socket closed without an answer, after or
before the work was done) and slow bodies (the headers, then the body a few bytes at a time).

Which fault a request meets is drawn from `random.Random(f"{seed}/{method}/{token}/{n}")`, `n` counting
that user's requests of that method: the same seed gives every user the same story, whatever the order
in which concurrent requests arrive.

`FaultServers` runs them, with the Kubernetes emulator (`LeanApiServer`, kube.py's for hundreds of pods)
and a kubelet that follows a watch (kube.py's), in a child process: the hub's
event loop (the test's) then holds only the spawners, as in production, and its stalls are the spawners'.
`python -m localhub.standins.faults CONFIG_JSON` is that child: it prints its URLs as one
JSON line and serves until its stdin closes, so it cannot outlive its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kmock
from aiohttp import web
from berdl_hub.spawner import BERDLSpawner

from localhub.standins import hub
from localhub.standins.governance import governance_app
from localhub.standins.http import bearer_token, serve
from localhub.standins.http import error as _error
from localhub.standins.hub import kbase_token
from localhub.standins.kube import NAMESPACE, ApiServer, Kubelet, api_status, field_manager, running_status
from localhub.standins.spark import cluster_created, spark_app
from localhub.tools import REPO

TOKEN_PREFIX = "kbase-token-"

# --- faults ----------------------------------------------------------------------------------------------
# Rates per request; what is left over answers normally. "_after": the work was done before the fault.
SPARK_CREATE_FAULTS = {
    "delay": 0.10,  # answers normally, late (but within the hub's deadline)
    "5xx_after": 0.07,  # half-built cluster, then an error answer
    "5xx_before": 0.05,  # a busy gateway: nothing built
    "4xx": 0.07,  # refused (bad token, bad request): nothing built
    "drop_after": 0.08,  # built, then the socket is closed without an answer: the classic orphan
    "drop_before": 0.04,  # the socket is closed before anything is built
    "slow_body": 0.05,  # built; 201 and the headers at once, the body trickles in within the deadline
    "slow_body_late": 0.05,  # built; the body trickles past the hub's deadline
    "hang_after": 0.04,  # built; no answer before the hub's deadline
}
SPARK_DELETE_FAULTS = {
    "delay": 0.10,
    "5xx_after": 0.06,
    "5xx_before": 0.08,
    "drop_after": 0.06,
    "drop_before": 0.06,
    "slow_body": 0.04,
    "slow_body_late": 0.04,
}
GOVERNANCE_FAULTS = {
    "delay": 0.10,
    "5xx_before": 0.08,
    "4xx": 0.02,
    "drop_before": 0.05,
    "slow_body": 0.04,
    "slow_body_late": 0.03,
}
# A DELETE fails at most this many times in a row per user: an outage shorter than what the hub retries
# (one DELETE call tries 3 times, and a stop makes two calls), so a cluster left at the end is the
# spawner's fault, not an API that refused for ever.
MAX_DELETE_FAULTS_IN_A_ROW = 4


@dataclass
class Timing:
    """Seconds the faults take; `deadline` is the hub's per-attempt time-out they are set against."""

    deadline: float = 2.0
    ok_delay: float = 0.05  # the most an ordinary answer waits
    delay: tuple[float, float] = (0.2, 0.8)  # as fractions of the deadline
    slow_body: float = 0.4  # trickle time, fraction of the deadline
    late: float = 1.5  # slow_body_late and hang_after: fraction of the deadline


@dataclass
class FaultPlan:
    seed: int
    rates: dict[str, float]
    counts: Counter[str] = field(default_factory=Counter)

    def draw(self, method: str, token: str, n: int) -> tuple[str, random.Random]:
        rng = random.Random(f"{self.seed}/{method}/{token}/{n}")
        x = rng.random()
        for kind, rate in self.rates.items():
            if x < rate:
                return kind, rng
            x -= rate
        return "ok", rng


_SERVER_ERRORS = [
    (500, "ClusterCreationError", "Failed to create the Spark master service"),
    (502, "BadGateway", "The upstream Kubernetes API did not answer"),
    (503, "ServiceUnavailable", "The cluster manager is restarting"),
]
_CLIENT_ERRORS = {
    "spark": [
        (401, "AuthenticationError", "Invalid or expired token"),
        (400, "ValidationError", "worker_memory: invalid size"),
        (422, "ValidationError", "Unprocessable cluster configuration"),
    ],
    "governance": [
        (401, "AuthenticationError", "Invalid or expired token"),
        (403, "PermissionError", "No MinIO account for this user"),
    ],
}


def _drop(request: web.Request) -> web.Response:
    """Close the connection without a word; the client sees the server disconnect."""
    assert request.transport is not None
    request.transport.abort()
    return web.Response(status=204)  # never sent


async def _trickle(request: web.Request, status: int, payload: dict[str, Any], seconds: float) -> Any:
    """The status and headers at once (with the full Content-Length), then the body in ten slow pieces."""
    body = json.dumps(payload).encode()
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    step = max(1, -(-len(body) // 10))
    try:
        for start in range(0, len(body), step):
            await response.write(body[start : start + step])
            await asyncio.sleep(seconds / 10)
        await response.write_eof()
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass  # the client gave up
    return response


class _Faulty:
    """What the two fake services share: per-user request counters, fault plans, in-flight counts."""

    def __init__(self, seed: int, timing: Timing) -> None:
        self.seed = seed
        self.timing = timing
        self.requests: Counter[tuple[str, str]] = Counter()
        self.delay = 0.0  # an extra delay before every answer (the bench's slow Spark API)
        self.in_flight = 0
        self.max_in_flight = 0

    def token(self, request: web.Request) -> str | None:
        token = bearer_token(request)
        return token if token is not None and token.startswith(TOKEN_PREFIX) else None

    def draw(self, plan: FaultPlan, method: str, token: str) -> tuple[str, random.Random]:
        n = self.requests[method, token]
        self.requests[method, token] += 1
        kind, rng = plan.draw(method, token, n)
        plan.counts[kind] += 1
        return kind, rng

    async def pause(self, kind: str, rng: random.Random) -> None:
        t = self.timing
        seconds = self.delay + rng.uniform(0, t.ok_delay)
        if kind == "delay":
            seconds += rng.uniform(*t.delay) * t.deadline
        await asyncio.sleep(seconds)

    async def answer(
        self, request: web.Request, kind: str, rng: random.Random, status: int, payload: dict[str, Any]
    ) -> Any:
        """The answer after the work was done, as the fault wants it."""
        t = self.timing
        if kind == "5xx_after":
            return _error(*rng.choice(_SERVER_ERRORS))
        if kind == "drop_after":
            return _drop(request)
        if kind == "slow_body":
            return await _trickle(request, status, payload, t.slow_body * t.deadline)
        if kind == "slow_body_late":
            return await _trickle(request, status, payload, t.late * t.deadline)
        if kind == "hang_after":
            await asyncio.sleep(t.late * t.deadline)
        return web.json_response(payload, status=status)

    service = "spark"

    def refuse(self, request: web.Request, kind: str, rng: random.Random) -> web.Response | None:
        """The answer of a fault that comes before any work, or None."""
        if kind == "5xx_before":
            return _error(*rng.choice(_SERVER_ERRORS[1:]))
        if kind == "4xx":
            return _error(*rng.choice(_CLIENT_ERRORS[self.service]))
        if kind == "drop_before":
            return _drop(request)
        return None


class FaultySpark(_Faulty):
    """The Spark Cluster Manager: one cluster per user (per token), misbehaving at `rates`."""

    def __init__(
        self,
        seed: int,
        timing: Timing,
        create_rates: dict[str, float] | None = None,
        delete_rates: dict[str, float] | None = None,
    ) -> None:
        super().__init__(seed, timing)
        self.create_plan = FaultPlan(seed, SPARK_CREATE_FAULTS if create_rates is None else create_rates)
        self.delete_plan = FaultPlan(seed, SPARK_DELETE_FAULTS if delete_rates is None else delete_rates)
        self.clusters: dict[str, str] = {}  # token -> cluster id
        self.created = 0
        self.deleted = 0
        self.replaced = 0  # a create for a user who still had a cluster: the old one was leaked
        self.delete_faults_in_a_row: Counter[str] = Counter()

    def app(self) -> web.Application:
        return spark_app(self._create, self._delete)

    def _build(self, token: str) -> dict[str, Any]:
        if token in self.clusters:
            self.replaced += 1
        cluster_id = f"cluster-{self.created:04d}"
        self.clusters[token] = cluster_id
        self.created += 1
        return cluster_created(cluster_id)

    async def _create(self, request: web.Request) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            token = self.token(request)
            if token is None:
                return _error(401, "AuthenticationError", "Invalid or expired token")
            await request.json()
            kind, rng = self.draw(self.create_plan, "POST", token)
            await self.pause(kind, rng)
            refused = self.refuse(request, kind, rng)
            if refused is not None:
                return refused
            return await self.answer(request, kind, rng, 201, self._build(token))
        finally:
            self.in_flight -= 1

    async def _delete(self, request: web.Request) -> Any:
        token = self.token(request)
        if token is None:
            return _error(401, "AuthenticationError", "Invalid or expired token")
        kind, rng = self.draw(self.delete_plan, "DELETE", token)
        if kind != "ok" and self.delete_faults_in_a_row[token] >= MAX_DELETE_FAULTS_IN_A_ROW:
            self.delete_plan.counts[kind] -= 1
            self.delete_plan.counts["ok"] += 1
            kind = "ok"
        self.delete_faults_in_a_row[token] = self.delete_faults_in_a_row[token] + 1 if kind != "ok" else 0
        await self.pause(kind, rng)
        refused = self.refuse(request, kind, rng)
        if refused is not None:
            return refused
        if self.clusters.pop(token, None) is None:
            message = "No Spark cluster to delete"
        else:
            self.deleted += 1
            message = "Spark cluster deleted"
        return await self.answer(request, kind, rng, 200, {"message": message})

    def state(self) -> dict[str, Any]:
        return {
            "clusters": len(self.clusters),
            "created": self.created,
            "deleted": self.deleted,
            "replaced": self.replaced,
            "max_in_flight": self.max_in_flight,
            "create_faults": dict(self.create_plan.counts),
            "delete_faults": dict(self.delete_plan.counts),
        }


class FaultyGovernance(_Faulty):
    """The data-governance API: MinIO credentials made up from the token."""

    service = "governance"

    def __init__(self, seed: int, timing: Timing, rates: dict[str, float] | None = None) -> None:
        super().__init__(seed, timing)
        self.plan = FaultPlan(seed, GOVERNANCE_FAULTS if rates is None else rates)

    def app(self) -> web.Application:
        return governance_app(self._credentials)

    async def _credentials(self, request: web.Request) -> Any:
        token = self.token(request)
        if token is None:
            return _error(401, "AuthenticationError", "Invalid token")
        kind, rng = self.draw(self.plan, "GET", token)
        await self.pause(kind, rng)
        refused = self.refuse(request, kind, rng)
        if refused is not None:
            return refused
        user = token.removeprefix(TOKEN_PREFIX)
        payload = {"username": user, "access_key": f"ak-{user}", "secret_key": f"sk-{user}"}
        return await self.answer(request, kind, rng, 200, payload)

    def state(self) -> dict[str, Any]:
        return {"faults": dict(self.plan.counts)}


#: A namespaced collection or object, as the hub's client names them: /api/v1/namespaces/NS/PLURAL[/NAME]
#: (the core group) or /apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME].
_NAMESPACED_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)


class LeanApiServer(ApiServer):
    """hubtest_support.ApiServer for hundreds of pods: it forgets each request once it is answered, and
    with `instant_pods` a pod is running from the moment it is created (no kubelet round trip).

    kmock keeps every request it ever served and matches each new one against that whole history, so a
    request costs time in proportion to all the requests before it: hundreds of spawns then take minutes.
    Nothing here asserts on past Kubernetes requests, so only those in flight are kept. Likewise a
    deleted object is forgotten (kmock keeps it, marked deleted, and scans it on every request), so the
    hundreds of pods and Secrets of one round of spawns do not slow down the next.

    The creates and deletes of objects, most of what a spawn and a stop ask, are served without kmock's
    request machinery (`_write`): kmock matches each request against its every reaction and finds an
    object by scanning all it holds, which made this process spend as much CPU as the hub's during 200
    spawns at once (bench/README.md). They change kmock's store and send its watch events as kmock
    does, and answer as an API server does (201 with the object, 409 AlreadyExists, 404 NotFound); every
    other request (reads, lists, watches, patches) still goes through kmock.
    """

    instant_pods = False
    history = "none"

    async def __call__(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        route = _NAMESPACED_PATH.match(raw_request.path)
        if route is not None and raw_request.method in ("POST", "DELETE"):
            answer = await self._write(raw_request, route)
            if answer is not None:
                return answer
        return await super().__call__(raw_request)

    async def _write(self, raw_request: web.BaseRequest, route: re.Match[str]) -> web.Response | None:
        """A create (POST to a collection) or a delete (DELETE of an object) of a kind this server holds,
        or None: kmock is to serve it (another kind, a create without a name, a delete that a finalizer
        holds back)."""
        group, version, namespace, plural, name = route.group(
            "group", "version", "namespace", "plural", "name"
        )
        resource = kmock.resource(group or "", version or route["core"], plural)
        if resource not in self.resources or (raw_request.method == "POST") == (name is not None):
            return None
        if raw_request.method == "DELETE":
            return await self._delete(resource, namespace, name)
        obj = await raw_request.json()
        if not isinstance(obj, dict) or not (obj.get("metadata") or {}).get("name"):
            return None
        manager = field_manager(raw_request.query, raw_request.headers.get("User-Agent", ""))
        return await self._create(resource, namespace, obj, manager)

    def _on_create(self, plural: str, namespace: str | None, obj: dict[str, Any], manager: str) -> None:
        super()._on_create(plural, namespace, obj, manager)
        if self.instant_pods and plural == "pods":
            obj["status"] = running_status(obj)

    async def _create(
        self, resource: kmock.resource, namespace: str, obj: dict[str, Any], manager: str
    ) -> web.Response:
        name = obj["metadata"]["name"]
        key = (resource, namespace, name)
        async with self._lock:  # kmock's, which its own writes and its listings hold
            if key in self.objects and not self.objects[key].deleted:
                return api_status(409, "AlreadyExists", f'{resource.plural} "{name}" already exists')
            self._on_create(resource.plural or "", namespace, obj, manager)
            self.objects[key] = obj
            stored = self.objects[key].raw
            await self._buses[resource].put({"type": "ADDED", "object": stored})
        return web.json_response(stored, status=201)

    async def _delete(self, resource: kmock.resource, namespace: str, name: str) -> web.Response | None:
        key = (resource, namespace, name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                return api_status(404, "NotFound", f'{resource.plural} "{name}" not found')
            meta = self.objects[key].raw["metadata"]
            if meta.get("finalizers") or meta.get("deletionTimestamp"):
                return None
            last = self.objects[key].raw
            del self.objects[key]
            await self._buses[resource].put({"type": "DELETED", "object": last})
        return web.json_response(last)

    async def _handle(self, request: Any) -> Any:
        try:
            return await super()._handle(request)
        finally:
            if request.action == kmock.action.DELETE and request.resource is not None and request.name:
                key = (request.resource, request.namespace, request.name)
                if key in self.objects and self.objects[key].deleted:
                    del self.objects[key]


# --- the child process -----------------------------------------------------------------------------------
async def _serve_all(config: dict[str, Any]) -> None:
    timing = Timing(**config.get("timing", {}))
    seed = int(config.get("seed", 0))
    spark = FaultySpark(seed, timing, config.get("spark_create_rates"), config.get("spark_delete_rates"))
    spark.delay = float(config.get("spark_delay", 0.0))
    governance = FaultyGovernance(seed, timing, config.get("governance_rates"))

    async with LeanApiServer() as k8s, kmock.Server(k8s) as k8s_server:
        k8s.instant_pods = bool(config.get("instant_pods", False))
        k8s_url = str(k8s_server.url).rstrip("/")

        async def state(request: web.Request) -> web.Response:
            left = Counter(key[0].plural for key, obj in k8s.objects.items() if not obj.deleted)
            return web.json_response(
                {
                    "spark": spark.state(),
                    "governance": governance.state(),
                    "pods": left["pods"],
                    "secrets": left["secrets"],  # the servers' credentials Secrets
                    "services": left["services"],  # the servers' Spark Connect Services
                }
            )

        async def set_delay(request: web.Request) -> web.Response:
            spark.delay = float((await request.json())["spark_delay"])
            return web.json_response({"spark_delay": spark.delay})

        control = web.Application()
        control.router.add_get("/state", state)
        control.router.add_post("/spark_delay", set_delay)
        # Instant pods are running once created: no node to play, and one watcher fewer to feed.
        node = contextlib.nullcontext() if k8s.instant_pods else Kubelet(k8s_url, NAMESPACE, watch=True)
        async with (
            serve(spark.app()) as spark_url,
            serve(governance.app()) as governance_url,
            serve(control) as control_url,
            node,
        ):
            urls = {"k8s": k8s_url, "spark": spark_url, "governance": governance_url, "control": control_url}
            print(json.dumps(urls), flush=True)
            # Serve until the parent closes our stdin (or dies).
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)


def _child_main() -> None:
    logging.basicConfig(level=logging.CRITICAL)  # dropped connections make aiohttp log tracebacks
    asyncio.run(_serve_all(json.loads(sys.argv[1])))


# --- the parent's side -----------------------------------------------------------------------------------
@dataclass
class Urls:
    k8s: str
    spark: str
    governance: str
    control: str

    def spawner(self, user: str, deadline: float, **traits: Any) -> BERDLSpawner:
        """hub.make_spawner's BERDLSpawner for `user`, talking to these servers, each call under
        `deadline`; keyword arguments set traits."""
        settings: dict[str, Any] = {
            "k8s_api_host": self.k8s,
            "spark_cluster_manager_url": self.spark,
            "governance_api_url": self.governance,
            "start_timeout": 60,
            "k8s_api_request_retry_timeout": 30,
            "spark_create_timeout": deadline,
            "spark_request_timeout": deadline,
            "governance_request_timeout": deadline,
            "events_enabled": False,
        }
        return hub.make_spawner(user, **{**settings, **traits})


class FaultServers:
    """The child process serving Kubernetes, Spark and governance; `async with` starts and ends it."""

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.urls: Urls | None = None
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> FaultServers:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "localhub.standins.faults",
            json.dumps(self.config),
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), 60)
            self.urls = Urls(**json.loads(line))
        except BaseException:
            await self._end()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._end()

    async def _end(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()

    async def state(self) -> dict[str, Any]:
        assert self.urls is not None
        async with aiohttp.ClientSession() as session, session.get(f"{self.urls.control}/state") as response:
            return await response.json()

    async def set_spark_delay(self, seconds: float) -> None:
        assert self.urls is not None
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.urls.control}/spark_delay", json={"spark_delay": seconds}) as response,
        ):
            response.raise_for_status()


# --- the hub's side: the users' tokens ---------------------------------------------------
def token_of(user: str) -> str:
    """The user's KBase token: these stand-ins take every token of this form (TOKEN_PREFIX)."""
    return kbase_token(user)


if __name__ == "__main__":
    _child_main()
