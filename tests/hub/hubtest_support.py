"""Stand-ins for what cannot run here, speaking real HTTP on 127.0.0.1.

- `SparkClusterManagerApp`: the Spark Cluster Manager API as its OpenAPI spec describes it
  (../shared/reference/spark-cluster-manager.openapi.json): 201 with `master_url` on create, 200 on
  delete also when there is nothing to delete, errors as `{error, error_type, message}`.
- `GovernanceApp`: `GET /credentials/` answering `{username, access_key, secret_key}`.
- `Kubelet`: plays the node for the kmock Kubernetes emulator: pods it sees get a uid, an IP and
  ready containers, as a kubelet would report them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import kmock
from aiohttp import web
from aiohttp.test_utils import TestServer
from typing_extensions import Self

NAMESPACE = "berdl"  # the namespace of user pods in the tests


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: throwaway
  cluster: {server: "http://127.0.0.1:9"}
contexts:
- name: throwaway
  context: {cluster: throwaway, user: nobody, namespace: berdl}
current-context: throwaway
users:
- name: nobody
  user: {token: throwaway-kube-token}
"""


@contextlib.contextmanager
def throwaway_kube_config() -> Iterator[Path]:
    """KubeSpawner loads a kube config when it is built; give it one that points nowhere.

    kubernetes_asyncio reads $KUBECONFIG once, at import, so its module default is patched, and put back.
    """
    from kubernetes_asyncio.config import kube_config

    with tempfile.TemporaryDirectory(prefix="berdl-kube-") as folder:
        path = Path(folder) / "config"
        path.write_text(KUBECONFIG)
        saved = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
        try:
            yield path
        finally:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved


@dataclass
class FakeOrmSpawner:
    """The parts of jupyterhub.orm.Spawner a spawner reads: its server's name (no server row)."""

    name: str = ""
    server: Any = None


@dataclass
class FakeUser:
    """The parts of jupyterhub.user.User the spawner uses."""

    name: str
    admin: bool = False
    auth_state: dict[str, Any] | None = None
    id: int = 1
    spawners: dict[str, Any] = field(default_factory=dict)  # server name -> spawner, as the hub keeps them

    @property
    def url(self) -> str:
        return f"/user/{self.name}/"

    async def get_auth_state(self) -> dict[str, Any] | None:
        return self.auth_state


def closed_port_url() -> str:
    """A URL where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"error": status, "error_type": error_type, "message": message}, status=status)


# The integer ranges of SparkClusterConfig in the manager's OpenAPI description.
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

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/clusters", self._create)
        app.router.add_delete("/clusters", self._delete)
        app.router.add_get("/health", self._health)
        return app

    def _token(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return token if scheme == "Bearer" and token in self.tokens else None

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

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
        return web.json_response(
            {
                "cluster_id": cluster_id,
                "master_url": f"spark://spark-master-{cluster_id}:7077",
                "master_ui_url": f"http://spark-master-{cluster_id}:8090",
            },
            status=201,
        )

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


@dataclass
class GovernanceApp:
    """The data-governance API: MinIO credentials per token (out of the repr, as above)."""

    credentials: dict[str, dict[str, str]] = field(repr=False)
    mode: str = "ok"  # ok | 500
    calls: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/credentials/", self._credentials)
        return app

    async def _credentials(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.mode == "500":
            return _error(500, "InternalError", "credential store unavailable")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.credentials:
            return _error(401, "AuthenticationError", "Invalid token")
        return web.json_response(self.credentials[token])


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free 127.0.0.1 port; yields its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


class ApiServer(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator, plus what a real API server adds to a created object."""

    _versions = itertools.count(1)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # When each object was last created (wall-clock seconds), by (resource plural, name): the
        # creationTimestamp an API server sets has whole seconds only, too coarse for bench/time_to_lab.py.
        self.created_at: dict[tuple[str, str], float] = {}

    async def __call__(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        # kubernetes_asyncio sends `watch=True`; the API server parses booleans loosely, kmock wants "true".
        watch = raw_request.rel_url.query.get("watch")
        if watch is not None and watch.lower() == "true" and watch != "true":
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.update_query(watch="true"))
        return await super().__call__(raw_request)

    async def _handle(self, request: kmock.Request) -> Any:
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("resourceVersion", str(next(self._versions)))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            if request.resource is not None and "name" in meta:
                self.created_at[(request.resource.plural, meta["name"])] = time.time()
            request.data.setdefault("status", {"phase": "Pending"})
        return await super()._handle(request)


def running_status(pod: dict[str, Any]) -> dict[str, Any]:
    """What a kubelet reports once the pod's containers run."""
    return {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "sha256:" + "0" * 64,
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }
            for c in pod.get("spec", {}).get("containers", [])
        ],
    }


class Background:
    """An object whose `_run()` coroutine runs as a task for as long as `async with` lasts."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def secret_refs(pod: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The notebook variables a pod reads from Secrets: variable -> (Secret name, key)."""
    refs = {}
    for container in pod.get("spec", {}).get("containers", []):
        for variable in container.get("env") or []:
            ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs[variable["name"]] = (ref["name"], ref["key"])
    return refs


class Kubelet(Background):
    """Marks every pod in a namespace as running and ready, the way a node reports it.

    Like a kubelet, it starts a pod's containers only once every Secret their environment names exists
    (until then a real one reports CreateContainerConfigError and retries); `resolved` keeps, per pod,
    the values the containers got from them.
    """

    def __init__(self, api_url: str, namespace: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.namespace = namespace
        self.started: set[str] = set()
        self.resolved: dict[str, dict[str, str]] = {}
        self.init_exit_code = 0  # non-zero: berdl-init fails and is retried, as with restartPolicy OnFailure
        self.init_message = ""  # the failed berdl-init's termination message (its log's tail), if any
        self.left_alone: set[str] = set()  # pods whose status a test sets itself (one still starting)

    def _resolve_secrets(self, pod: dict[str, Any], secrets: dict[str, dict[str, str]]) -> bool:
        values = {}
        for variable, (name, key) in secret_refs(pod).items():
            data = secrets.get(name) or {}
            if key not in data:
                return False
            values[variable] = base64.b64decode(data[key]).decode()
        self.resolved[pod["metadata"]["name"]] = values
        return True

    async def _secrets(self, session: aiohttp.ClientSession) -> dict[str, dict[str, str]]:
        async with session.get(f"{self.api_url}/api/v1/namespaces/{self.namespace}/secrets") as response:
            items = (await response.json()).get("items", []) if response.status == 200 else []
        return {item["metadata"]["name"]: item.get("data") or {} for item in items}

    def _init_terminated(self) -> dict[str, Any]:
        terminated: dict[str, Any] = {"exitCode": self.init_exit_code, "reason": "Error"}
        if self.init_message:
            terminated["message"] = self.init_message
        return terminated

    async def _fail_init(self, session: aiohttp.ClientSession, url: str, pod: dict[str, Any]) -> None:
        init = pod["spec"]["initContainers"][0]
        status = {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": init["name"],
                    "image": init["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": self._init_terminated()},
                }
            ],
        }
        async with session.patch(url, json={"status": status}):
            pass

    async def _run(self) -> None:
        pods = f"{self.api_url}/api/v1/namespaces/{self.namespace}/pods"
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(pods) as response:
                    items = (await response.json()).get("items", []) if response.status == 200 else []
                waiting = [
                    p
                    for p in items
                    if p.get("status", {}).get("phase") not in ("Running", "Failed")
                    and p["metadata"]["name"] not in self.left_alone
                ]
                secrets = await self._secrets(session) if waiting else {}
                for pod in waiting:
                    name = pod["metadata"]["name"]
                    if self.init_exit_code:
                        await self._fail_init(session, f"{pods}/{name}", pod)
                        continue
                    if not self._resolve_secrets(pod, secrets):
                        continue  # the containers wait for their Secret
                    patch = {"status": running_status(pod)}
                    async with session.patch(f"{pods}/{name}", json=patch) as response:
                        if response.status == 200:
                            self.started.add(name)
                await asyncio.sleep(0.02)


def assert_no_secret_in(text: str, secrets: list[str]) -> None:
    """Fail when any of the values appears in the text (names only a prefix of what leaked)."""
    assert all(secrets), "a secret to look for is empty"
    leaked = [s[:6] + "..." for s in secrets if s in text]
    assert not leaked, f"secrets found in logs: {leaked}"


async def reset_kubespawner() -> None:
    """KubeSpawner shares reflectors and API clients per process; tests end with none left.

    Run it before the Kubernetes emulator stops: an open watch would hold the server's shutdown.
    """
    from berdl_hub.services import close_shared_client
    from kubespawner import KubeSpawner, clients

    await close_shared_client()
    await KubeSpawner._stop_all_reflectors()
    KubeSpawner.reflectors.clear()
    for client in list(clients._client_cache.values()):
        await client.api_client.close()
    clients._client_cache.clear()
    clients.load_config.cache_clear()
