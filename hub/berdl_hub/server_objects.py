"""The Kubernetes objects a server owns beside its pod, made and removed by one mechanism.

Today a server owns its credentials Secret (`credentials`) and its Spark Connect Service
(`spark_connect`); every other per-server object plugs in the same way: an `Owned` says what its object
is called and what it holds, and this module gives it the guarantees:

- it is created once the pod is, owned by the uid the API server's answer gives it, after any object of
  the same name an earlier pod left is removed;
- in the pod's namespace it is owned by the pod, so Kubernetes deletes it with the pod even when the
  hub is gone; in another namespace, where no ownerReference reaches, it carries the pod's uid as a
  label (`OWNER_POD_UID`), by which a restarted hub finds it and deletes it itself (`sweep`);
- it is deleted once per start: on stop, after a failed start, and for a lost pod (JupyterHub's
  post-stop hook runs after each of them; a second delete is not sent), and by name, so a hub that
  restarted deletes it too;
- a restarted hub gives each running server the objects it lacks (`reconcile`), so a kind added by an
  upgrade reaches the servers started before it.

Calls are bounded and retried like KubeSpawner's own: each attempt within a time-out, again after a
time-out or a busy answer, until a deadline. No message holds an object's content.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes_asyncio.client.exceptions import ApiException

from . import metrics

#: The label by which an object in another namespace names the pod that owns it (a uid: a pod's name
#: may be longer than a label value).
OWNER_POD_UID = "berdl.kbase.us/owner-pod-uid"


@dataclass(frozen=True)
class Kind:
    """A kind of Kubernetes object and the kubernetes_asyncio API class whose methods handle it
    (`create_namespaced_<snake>`, `read_…`, `delete_…`, `list_…`, as KubeSpawner calls them)."""

    kind: str
    api_version: str
    api_class: str
    snake: str


SECRET = Kind("Secret", "v1", "CoreV1Api", "secret")


@dataclass(frozen=True)
class ServerPod:
    """What the objects of a server need to know of its pod."""

    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> ServerPod:
        """From a pod as the API (or KubeSpawner's reflector) gives it."""
        meta = pod["metadata"]
        return cls(meta["name"], meta["namespace"], meta["uid"], dict(meta.get("labels") or {}))


class Owned(Protocol):
    """One object each server owns: its kind, where it lives, and what it holds."""

    @property
    def kind(self) -> Kind: ...

    def name(self, pod_name: str) -> str:
        """The object's name, derived from the pod's, or from what the server keeps in its saved state (a
        choice made at its start), so that a hub that only knows those (after a restart, for a lost pod)
        can delete it."""
        ...

    def namespace(self, pod_namespace: str) -> str:
        """The object's namespace (the pod's unless it must live elsewhere)."""
        ...

    def body(self, pod: ServerPod) -> dict[str, Any] | None:
        """The object without name, namespace, labels or owner (added here), or None when this server
        needs none now, or when what it holds is unknown (the credentials, to a restarted hub)."""
        ...


class ObjectError(Exception):
    """The Kubernetes API refused or did not answer a call about an object; `str()` holds no content."""


# Answers worth another try: the API server (or what is in front of it) was busy.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


async def refusal(response: Any) -> ApiException:
    """The ApiException kubernetes_asyncio raises for an answer that is no success, for a call sent with
    `_preload_content=False` (which raises none): its status, reason, headers and the API server's message."""
    refused = ApiException(status=response.status, reason=response.reason)
    refused.body, refused.headers = await response.read(), response.headers
    return refused


@dataclass(frozen=True)
class Calls:
    """How the API is reached: a client per kubernetes_asyncio API class, and the bounds of each call."""

    api: Callable[[str], Any]
    timeout: float
    retry_for: float

    def method(self, kind: Kind, verb: str) -> Callable[..., Awaitable[Any]]:
        return getattr(self.api(kind.api_class), f"{verb}_namespaced_{kind.snake}")  # type: ignore[no-any-return]

    def write(self, kind: Kind, verb: str) -> Callable[..., Awaitable[None]]:
        """`method` for a create, delete or patch, whose answer (the object) is not used: it is not read
        into kubernetes_asyncio's models, which cost more of the hub's loop than the call itself (most
        of the CPU a spawn spends in the client, with 200 spawns at once). A status that is no success
        is raised as ApiException, as the client does."""
        send = self.method(kind, verb)

        async def unread(*args: Any) -> None:
            response = await send(*args, _preload_content=False)
            try:
                if not 200 <= response.status <= 299:
                    raise await refusal(response)
            finally:
                response.release()

        return unread

    async def run(self, what: str, call: Callable[[], Awaitable[Any]], *, landed: int | None = None) -> Any:
        """`call` with a time-out per attempt, again after a time-out or a busy answer, with a growing
        pause, until `retry_for` seconds have passed. Every call here is safe to repeat: a repeated create
        meets the first one's object (409), a repeated delete finds none (404).

        `landed`: an error status that, once an earlier attempt went unanswered, means that attempt was
        carried out after all (a create's 409: the object is there, made by this call); it ends the call
        as done. Without an unanswered attempt before it, it is raised as any other."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        pause = 0.1
        unanswered = False
        while True:
            try:
                return await asyncio.wait_for(call(), self.timeout)
            except asyncio.TimeoutError:
                problem = f"no answer within {self.timeout:g} s"
                unanswered = True
            except ApiException as exc:
                if exc.status == landed and unanswered:
                    return None
                if exc.status not in _RETRY_STATUSES:
                    raise
                problem = f"Kubernetes answered {exc.status} {exc.reason}"
            if loop.time() + pause > deadline:
                raise ObjectError(f"{what}: {problem}, for {self.retry_for:g} s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


def placed(owned: Owned, body: Mapping[str, Any], pod: ServerPod) -> dict[str, Any]:
    """`body` with its kind, name, namespace, the pod's labels, and its owner: the pod itself in the
    pod's namespace, else the `OWNER_POD_UID` label."""
    namespace = owned.namespace(pod.namespace)
    meta: dict[str, Any] = dict(body.get("metadata") or {})
    labels = {**pod.labels, **(meta.get("labels") or {})}
    meta.update(name=owned.name(pod.name), namespace=namespace, labels=labels)
    if namespace == pod.namespace:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod.name,
                "uid": pod.uid,
                # No blockOwnerDeletion: where OwnerReferencesPermissionEnforcement is on (OpenShift),
                # setting it needs `update` on pods/finalizers, which the hub's Role does not grant; the
                # garbage collector deletes the object with the pod without it.
                "controller": False,
            }
        ]
    else:
        labels[OWNER_POD_UID] = pod.uid
    return {**body, "apiVersion": owned.kind.api_version, "kind": owned.kind.kind, "metadata": meta}


async def create(calls: Calls, body: Mapping[str, Any], kind: Kind) -> None:
    """Create the object; one left by an earlier pod of the same name is replaced (deleted, created).

    Once that is deleted, nothing but this call makes an object of this name: a 409 after an attempt
    that went unanswered is that attempt's object (the hub may not read it back to compare: it never
    reads Secrets)."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    what = f"creating {kind.kind} {namespace}/{name}"
    started, outcome = time.monotonic(), "failed"
    try:
        for attempt in (1, 2):
            try:
                post = lambda: calls.write(kind, "create")(namespace, dict(body))  # noqa: E731
                await calls.run(what, post, landed=409 if attempt == 2 else None)
                outcome = "ok"
                return
            except ApiException as exc:
                if exc.status != 409 or attempt == 2:
                    raise ObjectError(f"{what}: Kubernetes answered {exc.status} {exc.reason}") from None
            await delete(calls, kind, namespace, name)
    finally:
        metrics.server_object(kind.kind, "create", outcome, time.monotonic() - started)


async def delete(calls: Calls, kind: Kind, namespace: str, name: str) -> bool:
    """Delete the object; False when there was none (also success)."""
    what = f"deleting {kind.kind} {namespace}/{name}"
    started, outcome = time.monotonic(), "failed"
    try:
        await calls.run(what, lambda: calls.write(kind, "delete")(name, namespace))
        outcome = "ok"
    except ApiException as exc:
        if exc.status == 404:
            outcome = "absent"
            return False
        raise ObjectError(f"{what}: Kubernetes answered {exc.status} {exc.reason}") from None
    finally:
        metrics.server_object(kind.kind, "delete", outcome, time.monotonic() - started)
    return True


async def patch(calls: Calls, kind: Kind, namespace: str, name: str, change: Mapping[str, Any]) -> bool:
    """Merge `change` into the object (a strategic merge patch: the keys of a map such as a Secret's
    `data` it names are set, the others kept); False when there is none. Safe to repeat, like the rest."""
    what = f"updating {kind.kind} {namespace}/{name}"
    try:
        await calls.run(what, lambda: calls.write(kind, "patch")(name, namespace, dict(change)))
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise ObjectError(f"{what}: Kubernetes answered {exc.status} {exc.reason}") from None
    return True


async def create_if_absent(calls: Calls, body: Mapping[str, Any], kind: Kind) -> bool:
    """Create the object unless one of its name exists (then leave it); whether it was created."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    what = f"creating {kind.kind} {namespace}/{name}"
    try:
        await calls.run(what, lambda: calls.write(kind, "create")(namespace, dict(body)))
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise ObjectError(f"{what}: Kubernetes answered {exc.status} {exc.reason}") from None
    return True


class ServerObjects:
    """The objects of one server, for one start (a new start, or a hub that restarted, makes a new one):
    it remembers which it deleted, so that a stop and the post-stop hook after it delete each once."""

    def __init__(
        self,
        owned: Sequence[Owned],
        calls: Calls,
        *,
        pod_name: str,
        pod_namespace: str,
        log: logging.Logger | logging.LoggerAdapter[Any],
        server: str,
    ) -> None:
        self.owned = list(owned)
        self.calls = calls
        self.pod_name = pod_name
        self.pod_namespace = pod_namespace
        self.log = log
        self.server = server  # in log lines
        self._deleted: set[tuple[str, str, str]] = set()
        self._pod_uid: str | None = None

    def _where(self, owned: Owned) -> tuple[str, str, str]:
        return owned.kind.kind, owned.namespace(self.pod_namespace), owned.name(self.pod_name)

    async def create(self, pod: ServerPod) -> None:
        """Create every object this server needs, all at once (each is one API round trip that the
        start waits for); the first failure is raised once all have ended (the start fails, and its
        tear-down deletes what was made)."""
        self._pod_uid = pod.uid
        _starting_here().add(pod.uid)
        made = []
        for owned in self.owned:
            body = owned.body(pod)
            if body is not None:
                self._deleted.discard(self._where(owned))
                made.append(create(self.calls, placed(owned, body, pod), owned.kind))
        for result in await asyncio.gather(*made, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def delete(self) -> None:
        """Delete every object of the server not yet deleted in this start, all at once; errors are
        logged, never raised, so that a stop always completes (an object in the pod's namespace goes with
        the pod)."""
        await asyncio.gather(*(self._delete(owned) for owned in self.owned))

    def start_ended(self) -> None:
        """The start that made the objects has ended: KubeSpawner's reflector has shown the pod running
        by now, or the start failed and deleted them; a sweep need not be told of the pod any more."""
        _starting_here().discard(self._pod_uid or "")

    async def _delete(self, owned: Owned) -> None:
        where = self._where(owned)
        if where in self._deleted:
            return
        kind, namespace, name = where
        try:
            await delete(self.calls, owned.kind, namespace, name)
        except ObjectError as exc:
            self.log.error("Could not delete the %s of %s: %s", kind, self.server, exc)
        else:
            self._deleted.add(where)

    async def update(self, owned: Owned, change: Mapping[str, Any]) -> bool:
        """Merge `change` into this server's object of `owned` (a running server's credentials take a
        renewed token); False when the object is not there (a server still starting makes it with its
        current content). Errors are raised (ObjectError), without the change's content."""
        _, namespace, name = self._where(owned)
        return await patch(self.calls, owned.kind, namespace, name, change)

    async def after_hub_start(self, pod: ServerPod | None, live_pod_uids: Callable[[], set[str]]) -> None:
        """What a restarted hub does for a running server: `reconcile` it (when `pod` is given), and
        `sweep_once` the pod's namespace, for the kinds of this record's `owned` (those its create and its
        delete use too). Failures are logged, never raised: the server runs on."""
        try:
            made = await self.reconcile(pod) if pod is not None else []
            if made:
                self.log.info("Made what %s lacked: %s", self.server, ", ".join(made))
            swept = await sweep_once(self.owned, self.calls, self.pod_namespace, live_pod_uids)
            if swept:
                self.log.info("Deleted what lost pods owned: %s", ", ".join(swept))
        except Exception as exc:
            self.log.error("Could not reconcile the objects of %s: %s", self.server, exc)

    async def reconcile(self, pod: ServerPod) -> list[str]:
        """Create the objects a running server lacks and can be given now; returns what was made. An
        object that is there already is left as it is: the create's conflict says so, which needs no
        right to read the object (the hub's Role may not read Secrets)."""
        made = []
        for owned in self.owned:
            body = owned.body(pod)
            if body is None:
                continue
            kind, namespace, name = self._where(owned)
            if await create_if_absent(self.calls, placed(owned, body, pod), owned.kind):
                made.append(f"{kind} {namespace}/{name}")
        return made


async def sweep(
    owned: Iterable[Owned],
    calls: Calls,
    pod_namespace: str,
    live_pod_uids: Callable[[], set[str]],
) -> list[str]:
    """Delete the objects in other namespaces whose owning pod is gone (what ownerReferences do for
    objects in the pod's namespace); returns what was deleted. Calls nothing when no object lives in
    another namespace.

    The objects are listed before the live pods are asked for: an object is made only after its pod
    exists, so one listed here has a pod that is known, unless it is gone: to `live_pod_uids` (KubeSpawner's
    reflector), or, while its server starts (from the pod create's answer, before the reflector may show
    the pod), to this process (`_starting_here`)."""
    foreign = {(o.kind, o.namespace(pod_namespace)) for o in owned}
    foreign = {(kind, namespace) for kind, namespace in foreign if namespace != pod_namespace}
    found: list[tuple[Kind, str, str, str]] = []
    for kind, namespace in sorted(foreign, key=lambda pair: (pair[0].kind, pair[1])):
        listing = await calls.run(
            f"listing {kind.kind} in {namespace}",
            lambda kind=kind, namespace=namespace: calls.method(kind, "list")(  # type: ignore[misc]
                namespace, label_selector=OWNER_POD_UID
            ),
        )
        for item in listing.items:
            owner = (item.metadata.labels or {}).get(OWNER_POD_UID)
            if owner:
                found.append((kind, namespace, item.metadata.name, owner))
    if not found:
        return []
    live = live_pod_uids() | _starting_here()
    deleted = []
    for kind, namespace, name, owner in found:
        if owner not in live:
            await delete(calls, kind, namespace, name)
            deleted.append(f"{kind.kind} {namespace}/{name}")
    return deleted


# The uids of the pods whose servers are starting in this process, per event loop (the hub's one), from
# the moment their objects are made: a sweep must not take a starting server's objects for a lost pod's
# while KubeSpawner's reflector has not yet shown its pod.
_starting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[str]] = weakref.WeakKeyDictionary()


def _starting_here() -> set[str]:
    return _starting.setdefault(asyncio.get_running_loop(), set())


# Where each event loop (the hub's one) has swept: once per namespace is enough, as a restarted hub's
# first look; later losses are deleted by name, by the stop of their server.
_swept: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[str]] = weakref.WeakKeyDictionary()


async def sweep_once(
    owned: Iterable[Owned], calls: Calls, pod_namespace: str, live_pod_uids: Callable[[], set[str]]
) -> list[str]:
    """`sweep`, the first time it is asked for in this process for `pod_namespace`."""
    done = _swept.setdefault(asyncio.get_running_loop(), set())
    if pod_namespace in done:
        return []
    done.add(pod_namespace)
    return await sweep(owned, calls, pod_namespace, live_pod_uids)
