"""The Service that makes a server's Spark Connect server reachable, and how it is named.

BERDL's notebook runs a Spark Connect server on port 15002, guarded by a token check that admits only
the pod's own user. Other BERDL services reach it by a Service, at `sc://<service>.<namespace>:15002`:
for a user's default server production names it `jupyter-<user name made DNS-safe>`, and tools expect
that name. That rule is not one-to-one (`john_doe` and `john__doe` both give `jupyter-john-doe`) and
long names pass the 63 characters of a Service name, so here:

- a default server gets the production name when it is a valid Service name and no other server holds
  it; otherwise, and for every named server, a name derived from the pod's (unique) name with a hash,
  which cannot be a production name (it holds `--`, which the production rule never leaves);
- the name is chosen before the pod is created, since the notebook's SPARK_CONNECT_URL carries it, and the
  pod is labelled with it (`LABEL`); the Service selects the pod by that label;
- who holds a name is what the hub itself knows: the names it chose for servers it is starting (`claim`)
  and the labels of every user pod its pod reflector sees. Choosing reads both and claims in one step of
  the event loop (no await in between), so two starts in this hub cannot both take a name; a restarted hub
  sees the running pods' labels, since KubeSpawner loads its reflector before it builds a pod. The hub runs
  as one process (one replica), so that is every server there is;
- the Service is one of the server's objects (`server_objects`): owned by the pod, made once it has a uid,
  deleted with the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import SpawnRefused
from .notebook_env import SPARK_CONNECT_PORT
from .server_objects import Kind, ServerPod

SERVICE = Kind("Service", "v1", "CoreV1Api", "service")

#: The pod's label naming its Service: the Service's selector, and the record of which name the pod holds.
LABEL = "berdl.kbase.us/spark-connect-service"

_SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # an RFC 1035 label, as Services need
_HASH = 8
_TRIES = 3  # fallback names tried in turn: a taken one means two pod names' hashes met


class NameTaken(Exception):
    """Every name this server could have is held by another server."""


def is_service_name(name: str) -> bool:
    return bool(_SERVICE_NAME.match(name))


def production_name(user: str) -> str:
    """The name BERDL's production hub gives the Service of `user`'s server: `jupyter-` and the user name
    lower-cased, every character but a-z, 0-9, `.` and `-` made `-`, runs of `-` made one, anything but
    a-z and 0-9 stripped from both ends. It may be no valid Service name (dots, length)."""
    name = re.sub(r"[^a-z0-9.-]", "-", user.lower())
    name = re.sub(r"-+", "-", name).strip(".-")
    return f"jupyter-{name}"


def fallback_name(pod_name: str, attempt: int = 0) -> str:
    """A Service name of the pod `pod_name` alone: the pod's name, shortened to leave room, then `--` and
    a hash of it (`attempt` varies the hash). Distinct pod names give distinct names unless both are
    shortened and their hashes meet; none is a production name, which never holds `--`."""
    digest = hashlib.sha256(f"{pod_name}#{attempt}".encode()).hexdigest()[:_HASH]
    base = re.sub(r"^[^a-z]+", "", re.sub(r"[^a-z0-9-]", "-", pod_name.lower()))
    base = base[: 63 - 2 - _HASH].rstrip("-") or "jupyter"
    return f"{base}--{digest}"


def choose(*, user: str, default_server: bool, pod_name: str, held: Mapping[str, str]) -> str:
    """The Service name of the server whose pod is `pod_name`: the production name for a default server
    when it is valid and free, else the first free fallback. `held` maps each name in use to the pod name
    of the server that holds it (a server may keep its own name)."""
    tried = []
    for attempt in range(-1 if default_server else 0, _TRIES):  # each made only when the one before is taken
        name = production_name(user) if attempt < 0 else fallback_name(pod_name, attempt)
        if is_service_name(name) and held.get(name, pod_name) == pod_name:
            return name
        tried.append(name)
    raise NameTaken(f"every Service name for {pod_name} is held by another server: {', '.join(tried)}")


# The names chosen by the starts this process runs, per event loop (the hub's one): (namespace, name) ->
# the pod name of the server that holds it, until its tear-down.
_claims: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], str]] = (
    weakref.WeakKeyDictionary()
)


def _loop_claims() -> dict[tuple[str, str], str]:
    return _claims.setdefault(asyncio.get_running_loop(), {})


def held_names(namespace: str, pods: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Who holds which name in `namespace`: the claims of this process, and the label of every pod given
    (the pod reflector's), terminating ones included (their Service lingers until they are gone)."""
    held = {name: pod for (space, name), pod in _loop_claims().items() if space == namespace}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = (meta.get("labels") or {}).get(LABEL)
        if name and meta.get("namespace", namespace) == namespace:
            held.setdefault(name, meta.get("name", ""))
    return held


def holder(namespace: str, name: str, pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The pod name of the server that holds `name`, as `held_names` says, or None: without building the
    whole map, nor reading `pods` when this process has claimed the name (each start asks several times,
    and the reflector holds every user's pod)."""
    claimed = _loop_claims().get((namespace, name))
    if claimed is not None:
        return claimed
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get(LABEL) == name and meta.get("namespace", namespace) == namespace:
            return str(meta.get("name", ""))
    return None


def claim(namespace: str, *, user: str, default_server: bool, pod_name: str, pods: Iterable[Any]) -> str:
    """Choose the server's Service name and hold it for this process, in one step (see the module's
    description); raises NameTaken."""
    name = choose(
        user=user, default_server=default_server, pod_name=pod_name, held=held_names(namespace, pods)
    )
    claims = _loop_claims()
    for key in [key for key, pod in claims.items() if pod == pod_name and key[0] == namespace]:
        del claims[key]  # a server holds one name: the one of its last start
    claims[(namespace, name)] = pod_name
    return name


def release(namespace: str, pod_name: str) -> None:
    """The server whose pod is `pod_name` no longer holds its name (its tear-down has run)."""
    claims = _loop_claims()
    for key in [key for key, pod in claims.items() if pod == pod_name and key[0] == namespace]:
        del claims[key]


@dataclass
class ServiceName:
    """One server's hold on its Service's name over the server's life: chosen at each start (`choose`),
    kept in the server's saved state (`to_state`, `load`), read back from its running pod's label by a
    restarted hub (`read_from`), given up at each tear-down (`release`), forgotten with the server's
    state (`forget`)."""

    namespace: str
    pod_name: str
    name: str | None = None

    STATE_KEY: ClassVar[str] = "berdl_spark_connect_service"

    def choose(
        self,
        *,
        user: str,
        default_server: bool,
        pods: list[Any],
        kubespawner_service: bool,
        log: logging.Logger,
        server: str,
    ) -> str:
        """Choose the name and hold it (`claim`), before the pod that carries it in SPARK_CONNECT_URL
        exists. `kubespawner_service`: KubeSpawner makes a Service of its own, named as the pod
        (services_enabled, internal_ssl), which may be the production name, so that name counts as held
        by this server's pod. When every name is taken the start is refused: the hub's log (`log`, about
        `server`) says which names, the user is told where to ask."""
        if kubespawner_service:
            pods = [*pods, {"metadata": {"name": "", "labels": {LABEL: self.pod_name}}}]
        try:
            self.name = claim(
                self.namespace, user=user, default_server=default_server, pod_name=self.pod_name, pods=pods
            )
        except NameTaken as exc:
            log.error("No Spark Connect Service name for %s: %s", server, exc)
            raise SpawnRefused(
                "Your server's Spark Connect address is held by another server; an administrator can "
                "tell which from the hub's log."
            ) from None
        return self.name

    def held(self, pods: Iterable[Mapping[str, Any]]) -> str | None:
        """The name, unless another server holds it now (`pods`: the pod reflector's): a name that comes
        only from an old saved state (the pod gone while the hub was down, the name taken since) must not
        make this server delete another's Service."""
        if self.name is None:
            return None
        return self.name if holder(self.namespace, self.name, pods) in (None, self.pod_name) else None

    def read_from(self, pod: Mapping[str, Any]) -> None:
        """The name the running `pod` holds (its label), also when the hub died before saving its state."""
        self.name = (pod["metadata"].get("labels") or {}).get(LABEL) or self.name

    def release(self) -> None:
        release(self.namespace, self.pod_name)

    def forget(self) -> None:
        self.name = None

    def to_state(self) -> dict[str, str]:
        return {self.STATE_KEY: self.name} if self.name else {}

    def load(self, state: Mapping[str, Any]) -> None:
        self.name = state.get(self.STATE_KEY) or None


def body(name: str, notebook_port: int) -> dict[str, Any]:
    """The Service `name`: the notebook's port and Spark Connect's, on the pod labelled with `name`."""
    return {
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL: name},
            "ports": [
                {
                    "name": "notebook-port",
                    "port": notebook_port,
                    "targetPort": notebook_port,
                    "protocol": "TCP",
                },
                {
                    "name": "spark-connect",
                    "port": SPARK_CONNECT_PORT,
                    "targetPort": SPARK_CONNECT_PORT,
                    "protocol": "TCP",
                },
            ],
        }
    }


@dataclass(frozen=True)
class SparkConnectService:
    """The server's Service, one of its objects (`server_objects.Owned`).

    `service` gives the name the server holds (chosen at its start, or, for a hub that restarted, from its
    saved state or its pod's label); unknown, it is the fallback, which is a named server's name anyway.
    A pod without the label was made before this hub made Services: its notebook was given no
    SPARK_CONNECT_URL, so it gets none."""

    service: Callable[[], str | None]
    notebook_port: int
    kind: Kind = SERVICE

    def name(self, pod_name: str) -> str:
        return self.service() or fallback_name(pod_name)

    def namespace(self, pod_namespace: str) -> str:
        return pod_namespace  # a Service selects pods of its own namespace only

    def body(self, pod: ServerPod) -> dict[str, Any] | None:
        name = pod.labels.get(LABEL)
        if not name or name != self.name(pod.name):
            return None
        return body(name, self.notebook_port)
