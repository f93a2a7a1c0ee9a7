"""The Kubernetes API (kmock's emulator, plus what a real API server adds) and a kubelet that plays the
node for it: pods it sees get a uid, an IP and ready containers, as a kubelet would report them. Also the
kube config a KubeSpawner is given.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import json
import logging
import re
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import kmock
from aiohttp import web
from typing_extensions import Self

log = logging.getLogger("berdl.localhub.kubelet")

NAMESPACE = "berdl"  # the namespace of the users' pods
#: Where nothing listens: a KubeSpawner built offline (`_mock=True`) never connects.
NOWHERE = "http://127.0.0.1:9"

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{{name: berdl, cluster: {{server: "{server}"}}}}]
contexts: [{{name: berdl, context: {{cluster: berdl, user: hub, namespace: {namespace}}}}}]
current-context: berdl
users: [{{name: hub, user: {{token: berdl-local-kube-token}}}}]
"""


def kube_config(server: str = NOWHERE, namespace: str = NAMESPACE) -> str:
    """A kube config (the text of a KUBECONFIG file) for the API at `server`, in `namespace`."""
    return KUBECONFIG.format(server=server, namespace=namespace)


@contextlib.contextmanager
def throwaway_kube_config() -> Iterator[Path]:
    """KubeSpawner loads a kube config when it is built; give it one that points nowhere.

    kubernetes_asyncio reads $KUBECONFIG once, at import, so its module default is patched, and put back.
    """
    from kubernetes_asyncio.config import kube_config as loader

    with tempfile.TemporaryDirectory(prefix="berdl-kube-") as folder:
        path = Path(folder) / "config"
        path.write_text(kube_config())
        saved = loader.KUBE_CONFIG_DEFAULT_LOCATION
        loader.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
        try:
            yield path
        finally:
            loader.KUBE_CONFIG_DEFAULT_LOCATION = saved


#: How long a watch without `timeoutSeconds` lasts: kube-apiserver ends one after a random time between
#: its --min-request-timeout (1800 s by default) and twice that; the shorter bound stands in for it.
WATCH_SECONDS_DEFAULT = 1800.0


#: The kinds the emulator holds: what the hub and the node stand-in touch.
RESOURCES = (
    "v1/pods",
    "v1/secrets",
    "v1/events",
    "v1/persistentvolumeclaims",
    "v1/services",
    "networking.k8s.io/v1/networkpolicies",
)
#: The core kinds the emulator's discovery describes. kmock's own discovery of the core group names no
#: kind and no scope, and says groupVersion "/v1", which kubectl refuses ("no matches for kind").
CORE_KINDS = {
    "pods": "Pod",
    "secrets": "Secret",
    "configmaps": "ConfigMap",
    "services": "Service",
    "events": "Event",
}
_CORE_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_NAMED_CORE_OBJECT = re.compile(
    r"^/api/v1/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)/(?P<name>[^/]+)$"
)


#: How many of a kind's latest changes a watch can be resumed from (kube-apiserver's watch cache keeps a
#: window too; a watch from an older resourceVersion is answered 410 Expired, and the client lists again).
JOURNAL_LENGTH = 1000


@attrs.mutable
class JournalledBus(kmock.Bus[Any]):
    """kmock's change bus of one kind, with what an API server adds: every change gets a new
    resourceVersion, on the stored object as on its event, and the latest changes are kept, so that a
    watch from a listing's resourceVersion is sent what changed since that listing."""

    next_version: Callable[[], int] = attrs.field(kw_only=True)
    journal: collections.deque[tuple[int, Any]] = attrs.field(
        kw_only=True, factory=lambda: collections.deque(maxlen=JOURNAL_LENGTH)
    )

    async def put(self, *events: Any) -> None:
        for event in events:
            version = self.next_version()
            obj = event["object"]
            if event["type"] == "DELETED":
                # A deleted object's last version is the one an earlier event sent: that keeps its own.
                obj = event["object"] = {**obj, "metadata": dict(obj["metadata"])}
            # Otherwise the object shares its metadata with the version kmock stores: a read sees it too.
            obj["metadata"]["resourceVersion"] = str(version)
            self.journal.append((version, event))
        await super().put(*events)

    def since(self, version: int) -> list[Any] | None:
        """The changes after `version`, oldest first, or None when the journal no longer reaches back
        that far."""
        if len(self.journal) == self.journal.maxlen and self.journal[0][0] > version + 1:
            return None
        return [event for kept, event in self.journal if kept > version]


class ApiServer(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator, plus what a real API server adds: the fields it sets on a created
    object (its uid, resourceVersion, creationTimestamp and managedFields; a pod's status; a Secret's
    `stringData` moved into `data`), a replace (PUT, as `kubectl replace` sends it, refused when the
    resourceVersion is no longer the object's), a ClusterIP Service's virtual address, discovery of the
    core kinds that kubectl understands, the end of a watch after its `timeoutSeconds` (kmock's
    watches never end), and resourceVersions that order the changes: a listing says the version it saw,
    and a watch from it is sent every change since (kmock's listing says "..." and its watch sends what
    is there as new, so a pod deleted between KubeSpawner's listing and its watch stayed in its
    reflector until the next listing, and a start that replaced it waited for it to go)."""

    _versions = itertools.count(1)
    #: What the request history keeps once a request is answered: every request but listings (the
    #: default: tests count the other requests), "all" (a test that records every call, as the Role's
    #: does), or "none" (hundreds of spawns, where nothing asserts on past requests). kmock matches each
    #: new request against the whole history, so a request costs time in proportion to those kept.
    history: str = "writes"
    _service_ips = itertools.count(10)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for resource in RESOURCES:
            self.resources[resource] = {}
        self._buses = collections.defaultdict(self._new_bus)
        # When each object was last created (wall-clock seconds), by (resource plural, name): the
        # creationTimestamp an API server sets has whole seconds only, too coarse for bench/time_to_lab.py.
        self.created_at: dict[tuple[str, str], float] = {}

    async def __call__(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        # kubernetes_asyncio sends `watch=True`; the API server parses booleans loosely, kmock wants "true".
        watch = raw_request.rel_url.query.get("watch")
        if watch is not None and watch.lower() == "true" and watch != "true":
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.update_query(watch="true"))
        named = _NAMED_CORE_OBJECT.match(raw_request.path)
        if raw_request.method == "PUT" and named:
            return await self._replace(
                **named.groupdict(), body=await raw_request.json(), query=raw_request.query
            )
        if raw_request.method == "PATCH" and named:
            refused = self._uid_precondition(**named.groupdict(), body=await raw_request.json())
            if refused is not None:
                return refused
        return await super().__call__(raw_request)

    def _uid_precondition(self, *, namespace: str, plural: str, name: str, body: Any) -> web.Response | None:
        """A patch whose metadata.uid is not the object's is refused, as a real API server refuses it (409):
        a kubelet's status of a pod deleted since must not land on a new pod of the same name."""
        wanted = (body.get("metadata") or {}).get("uid") if isinstance(body, dict) else None
        key = (kmock.resource(f"v1/{plural}"), namespace, name)
        if not wanted or key not in self.objects or self.objects[key].deleted:
            return None
        actual = self.objects[key].last.raw["metadata"].get("uid")
        if wanted == actual:
            return None
        message = f"Precondition failed: UID in precondition: {wanted}, UID in object meta: {actual}"
        return api_status(409, "Conflict", message)

    async def _serve_version(self, request: Any) -> Any:
        listing = await super()._serve_version(request)
        if listing.get("groupVersion") == "/v1":
            listing["groupVersion"] = "v1"
            for resource in listing["resources"]:
                kind = CORE_KINDS.get(resource["name"])
                if kind:
                    resource.update(kind=kind, singularName=kind.lower(), namespaced=True, verbs=_CORE_VERBS)
        return listing

    def _new_bus(self) -> JournalledBus:
        return JournalledBus(next_version=lambda: next(self._versions))

    async def _replace(
        self, *, namespace: str, plural: str, name: str, body: dict[str, Any], query: Any
    ) -> web.Response:
        """PUT: the object becomes `body`, but for the fields the server owns."""
        resource = kmock.resource(f"v1/{plural}")
        key = (resource, namespace, name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                return api_status(404, "NotFound", f'{plural} "{name}" not found')
            current = self.objects[key].last.raw
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                message = f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified'
                return api_status(409, "Conflict", message)
            meta = dict(body.get("metadata") or {})
            for owned in ("uid", "creationTimestamp"):
                meta[owned] = current["metadata"][owned]
            meta.update(namespace=namespace, name=name)
            replaced = {**body, "metadata": meta}
            _as_stored(plural, replaced, manager=query.get("fieldManager") or "kubectl-replace")
            self.objects[key].create(replaced)
            await self._buses[resource].put({"type": "MODIFIED", "object": replaced})
        return web.json_response(replaced)

    async def _serve_list(self, request: Any) -> Any:
        # The version is taken before the objects are read: a change between the two is then sent again
        # to a watch from it, which only repeats what the listing already holds.
        version = next(self._versions)
        listing = await super()._serve_list(request)
        listing["metadata"] = {"resourceVersion": str(version)}
        return listing

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        """kmock's watch stream, ended after `timeoutSeconds` as a real API server ends it. A client that
        asks for one (KubeSpawner's reflectors: 10 s) waits for that end; one that never comes makes the
        client's own read time-out fire, which the reflector logs as an error and retries."""
        seconds = float(request.params.get("timeoutSeconds") or WATCH_SECONDS_DEFAULT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        events = self._watch_events(request)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(anext(events), deadline - loop.time())
                except (asyncio.TimeoutError, StopAsyncIteration):
                    return
                yield event
        finally:
            await events.aclose()

    async def _watch_events(self, request: Any) -> AsyncIterator[Any]:
        """A watch as an API server serves it: from a `resourceVersion`, every change since; from none
        (or "0"), every object there as ADDED, then each change. No change is lost in between: the change
        bus is marked in the same hold of the lock as the objects or the journal are read. (kmock marks it
        only once it has sent them all, so an object created meanwhile reached no watcher, and a pod
        created while KubeSpawner's reflector started its watch again stayed unseen until the next one.)"""
        yield b""  # the headers go out at once, as in kmock's: a client waits for them
        bus = self._buses[request.resource]
        since = request.params.get("resourceVersion") or "0"

        def wanted(namespace: str | None, name: str | None) -> bool:
            return request.namespace in (None, namespace) and request.name in (None, name)

        def about(event: Any) -> bool:
            meta = (event.get("object") or {}).get("metadata") or {}
            return wanted(meta.get("namespace"), meta.get("name"))

        async with self._lock:
            if since == "0":
                there: list[Any] | None = [
                    {"type": "ADDED", "object": obj.raw}
                    for (resource, namespace, name), obj in self.objects.items()
                    if resource == request.resource and wanted(namespace, name) and not obj.deleted
                ]
            else:
                there = bus.since(int(since)) if since.isdigit() else None
            marker = await bus.mark()
        if there is None:
            await bus.unmark(marker)
            yield {"type": "ERROR", "object": expired(since)}
            return
        try:
            for event in there:
                if about(event):
                    yield event
            async for event in bus.stream(since=marker):
                if about(event):
                    yield event
        finally:
            await bus.unmark(marker)

    async def _handle(self, request: kmock.Request) -> Any:
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            plural = request.resource.plural if request.resource is not None else None
            manager = field_manager(request.params, request.headers.get("User-Agent", ""))
            self._on_create(plural or "", request.namespace, request.data, manager)
        try:
            return await super()._handle(request)
        finally:
            listing = request.method == "GET" and request.name is None
            # A listing (a kubelet polls them every few milliseconds) is forgotten once answered, unless
            # all are kept: thousands of kept listings made each later request slower.
            if self.history == "none" or (listing and self.history != "all"):
                self._forget(request)

    def _on_create(self, plural: str, namespace: str | None, obj: dict[str, Any], manager: str) -> None:
        """What the API server sets on an object it is asked to create (`plural`, in `namespace`), in
        place: the fields it owns, a pod's first status, a ClusterIP Service's address, `_as_stored`."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("resourceVersion", str(next(self._versions)))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if plural and "name" in meta:
            self.created_at[(plural, meta["name"])] = time.time()
        if plural == "pods":
            obj.setdefault("status", {"phase": "Pending"})
        if plural == "services":
            # A ClusterIP Service gets its virtual address from the API server's service range.
            spec = obj.setdefault("spec", {})
            if spec.get("type", "ClusterIP") == "ClusterIP" and not spec.get("clusterIP"):
                number = next(self._service_ips)
                spec["clusterIP"] = f"10.96.{number // 250}.{number % 250 + 1}"
        _as_stored(plural, obj, manager=manager)

    def _forget(self, request: Any) -> None:
        history = self._requests
        for index in range(len(history) - 1, -1, -1):
            if history[index] is request:
                del history[index]
                return


class StackApiServer(ApiServer):
    """The local stack's API server: it keeps no request once answered. kmock keeps every request and
    matches each new one against all it kept, so over a long run each call grew slower (25 ms with 500
    kept, 150 ms with 2,500: bench/README.md, "Under load"), until under 40 users the stand-ins' one
    event loop could no longer answer within KubeSpawner's 3 s."""

    history = "none"


def field_manager(params: Mapping[str, str], user_agent: str) -> str:
    """The field manager of a write: its `fieldManager` parameter, else the one the API server names after
    the client's User-Agent (its program's name)."""
    return params.get("fieldManager") or user_agent.split("/", 1)[0] or "unknown"


def _as_stored(plural: str, obj: dict[str, Any], *, manager: str) -> None:
    """What the API server does to an object it stores: a Secret's `stringData` goes into `data`
    (base64), and `managedFields` records which manager set which fields (names, never values)."""
    if plural == "secrets" and obj.get("stringData"):
        data = obj.setdefault("data", {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode("ascii")
    fields = {
        f"f:{key}": _field_names(value) for key, value in obj.items() if key not in ("apiVersion", "kind")
    }
    fields.pop("f:status", None)
    obj["metadata"]["managedFields"] = [
        {
            "manager": manager,
            "operation": "Update",
            "apiVersion": obj.get("apiVersion", "v1"),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }
    ]


def _field_names(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {f"f:{key}": _field_names(inner) for key, inner in value.items() if key != "managedFields"}


def expired(version: str) -> dict[str, Any]:
    """The Status a watch from a resourceVersion no longer kept ends with (the client lists again)."""
    return status_body(410, "Expired", f"too old resource version: {version}")


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A v1 Status, as the API server describes a failure."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def api_status(code: int, reason: str, message: str) -> web.Response:
    """An error as the API server answers it: a v1 Status."""
    return web.json_response(status_body(code, reason, message), status=code)


def running_status(pod: dict[str, Any], init_message: str = "") -> dict[str, Any]:
    """What a kubelet reports once the pod's containers run: each init container ended (with
    `init_message`, what it left in its termination-message file, when given), the containers running."""
    inits = []
    for c in pod.get("spec", {}).get("initContainers", []):
        terminated: dict[str, Any] = {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:00:01Z",
        }
        if init_message:
            terminated["message"] = init_message
        inits.append(
            {"name": c["name"], "image": c["image"], "imageID": "sha256:" + "0" * 64, "ready": True,
             "restartCount": 0, "state": {"terminated": terminated}}
        )  # fmt: skip
    return {
        "phase": "Running",
        "initContainerStatuses": inits,
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
    """Plays the node for the pods of one namespace in the API at `api_url`, and reports each pod's state
    back as a kubelet does: with a PATCH of its status.

    This one only makes the containers seem to run. Like a kubelet, it starts a pod's containers once
    every Secret their environment names exists (until then a real one reports
    CreateContainerConfigError and retries); `resolved` keeps, per pod, the values the containers got
    from them. `init_exit_code` makes berdl-init fail instead, as with restartPolicy OnFailure.
    The local stack's node (localhub.node.Node) builds on it and plays each pod with podman.

    It lists the namespace's pods every `poll_seconds`. With `watch=True` it follows a watch instead
    and reports each new pod running at once, without waiting for its Secrets: for hundreds of pods,
    where listing every pod and every Secret each round would cost too much.
    """

    def __init__(
        self, api_url: str, namespace: str, *, poll_seconds: float = 0.02, watch: bool = False
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.namespace = namespace
        self.poll_seconds = poll_seconds
        self.watch = watch
        self.started: set[str] = set()
        self.resolved: dict[str, dict[str, str]] = {}
        self.init_exit_code = 0  # non-zero: berdl-init fails and is retried, as with restartPolicy OnFailure
        self.init_message = ""  # the failed berdl-init's termination message (its log's tail), if any
        self.init_summary = ""  # the termination message a berdl-init that succeeded leaves, if any
        self.left_alone: set[str] = set()  # pods whose status a test sets itself (one still starting)
        self._reporting: set[asyncio.Task[bool]] = set()

    @property
    def pods_url(self) -> str:
        return f"{self.api_url}/api/v1/namespaces/{self.namespace}/pods"

    # --- the loop ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            while True:
                try:
                    await (self._follow(session) if self.watch else self._round(session))
                except (aiohttp.ClientError, OSError) as error:
                    log.warning("kubelet: the API did not answer: %s", error)
                await asyncio.sleep(self.poll_seconds)

    async def _pods(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with session.get(self.pods_url) as response:
            return (await response.json()).get("items", []) if response.status == 200 else []

    async def _report(
        self, session: aiohttp.ClientSession, name: str, status: dict[str, Any], uid: str = ""
    ) -> bool:
        """The pod's status, as the kubelet sees it; False when the API did not take it. With `uid`, only
        for that pod: a pod of the same name created since refuses it (a kubelet's status is its pod's)."""
        body: dict[str, Any] = {"status": status}
        if uid:
            body["metadata"] = {"uid": uid}
        async with session.patch(f"{self.pods_url}/{name}", json=body) as response:
            if response.status != 200:
                log.warning("kubelet: status of %s not taken: %s", name, response.status)
            return response.status == 200

    async def _round(self, session: aiohttp.ClientSession) -> None:
        waiting = [
            p
            for p in await self._pods(session)
            if p.get("status", {}).get("phase") not in ("Running", "Failed")
            and p["metadata"]["name"] not in self.left_alone
        ]
        secrets = await self._secrets(session) if waiting else {}
        for pod in waiting:
            name = pod["metadata"]["name"]
            if self.init_exit_code:
                await self._report(session, name, self._failed_init(pod))
                continue
            if not self._resolve_secrets(pod, secrets):
                continue  # the containers wait for their Secret
            if await self._report(session, name, running_status(pod, self.init_summary)):
                self.started.add(name)

    async def _follow(self, session: aiohttp.ClientSession) -> None:
        """One watch of the pods, until the API ends it: each pod added Pending is reported running
        (so the hub sees it added, then modified, as from a real node)."""
        async with session.get(self.pods_url, params={"watch": "true"}) as response:
            async for line in response.content:
                event = json.loads(line) if line.strip() else {}
                pod = event.get("object", {})
                if event.get("type") == "ADDED" and pod.get("status", {}).get("phase") == "Pending":
                    report = self._report(session, pod["metadata"]["name"], running_status(pod))
                    task = asyncio.create_task(report)
                    self._reporting.add(task)  # held, so that the loop does not drop it half-way
                    task.add_done_callback(self._reporting.discard)

    # --- the containers' Secrets and berdl-init ------------------------------------------------------
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

    def _failed_init(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The status of a pod whose berdl-init failed and waits to be retried."""
        terminated: dict[str, Any] = {"exitCode": self.init_exit_code, "reason": "Error"}
        if self.init_message:
            terminated["message"] = self.init_message
        init = pod["spec"]["initContainers"][0]
        return {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": init["name"],
                    "image": init["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": terminated},
                }
            ],
        }


@contextlib.contextmanager
def api_server_in_thread(*plurals: str) -> Iterator[tuple[str, ApiServer]]:
    """The Kubernetes API stand-in served from a thread of its own, for synchronous tests that drive
    programs (kubectl) against it; yields its base URL and the emulator (read it only between calls).
    `plurals`: the core kinds it holds ("secrets", ...)."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[tuple[str, ApiServer]] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        async with ApiServer() as k8s, kmock.Server(k8s) as server:
            for plural in plurals:
                k8s.resources[f"v1/{plural}"] = {}
            ready.set_result((str(server.url).rstrip("/"), k8s))
            await stop.wait()

    task = loop.create_task(serve())
    thread = threading.Thread(target=loop.run_until_complete, args=(task,), name="kube-api", daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(_wait(ready), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


async def _wait(future: asyncio.Future[tuple[str, ApiServer]]) -> tuple[str, ApiServer]:
    return await future
