"""What the node stand-in changes in a pod the spawner posted, before `podman kube play` runs it.

Every change is forced by running on this one machine with podman 4.3 instead of on a Kubernetes node;
nothing else of the spawner's pod is touched. `for_this_machine()` makes them all, in this order:

1. Image names become the locally built tags (`images`): no registry can be reached here.
2. Every hostPath gets `host_root` put in front of it (`/mnt/berdl/homes/alice` becomes
   `HOST_ROOT/mnt/berdl/homes/alice`): the node's folders are a temporary folder of this machine, not
   the cluster nodes' NFS mounts.
3. Host networking (`hostNetwork: true`): tests send traffic only to loopback, never to a container
   bridge's private addresses.
4. Container ports are dropped: with host networking podman 4.3 refuses a pod that declares any
   (`PortMappings can only be used with Bridge or slirp4netns networking`); nothing is published anyway.
5. The pod's own loopback address `pod_ip` (127.x.y.z) is where the notebook binds: the host of
   `JUPYTERHUB_SERVICE_URL` (where jupyterhub-singleuser listens; KubeSpawner puts `ip`, 0.0.0.0,
   there) becomes `pod_ip`, so that two pods on the host network can both use port 8888. The node
   reports the same address as `status.podIP`, which is where the hub's proxy routes.
6. Every downward-API variable (`valueFrom.fieldRef`, `valueFrom.resourceFieldRef`) becomes the literal
   the kubelet would give it (`downward`: the pod's own fields, `pod_ip` as its address, the containers'
   requests and limits, this machine as the node): podman 4.3 fills in few of them, `status.podIP` none.
7. podman keeps initContainers after they ran (the annotation `io.podman.annotations.init.container.type:
   always`): by default it removes one that succeeded, and its log with it, where a kubelet keeps it
   for `kubectl logs -c`.
8. Each container's termination-message file (`terminationMessagePath`, Kubernetes' default
   `/dev/termination-log`) is a file of the node's, given in `termination_files`, mounted there as a
   hostPath of type File: the kubelet makes and mounts such a file for every container, and reads it
   when the container ends; podman makes none.

The credentials Secret is not a change to the pod: the node creates a podman secret of the same name
beforehand (see `node.py`), because podman 4.3 fails on a Kubernetes Secret given in the same YAML.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from localhub import downward

KEEP_INIT_CONTAINERS = {"io.podman.annotations.init.container.type": "always"}
#: Kubernetes' default terminationMessagePath (the API server fills it in; kmock does not).
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_VOLUME = "node-termination-message"
BIND_URL_VARIABLE = "JUPYTERHUB_SERVICE_URL"


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def for_this_machine(
    pod: Mapping[str, Any],
    *,
    pod_ip: str,
    host_root: str,
    images: Mapping[str, str],
    termination_files: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The pod as `podman kube play` must get it on this machine (changes 1 to 8 above);
    `termination_files`: the node's file for each container's termination message, by container name."""
    local = copy.deepcopy(dict(pod))
    status = {
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
    }
    allocatable = downward.node_allocatable()
    local.pop("status", None)
    local["metadata"].setdefault("annotations", {}).update(KEEP_INIT_CONTAINERS)
    spec = local["spec"]
    spec["hostNetwork"] = True
    for container in _containers(spec):
        image = container["image"]
        if image not in images:
            raise ValueError(f"no local image for {image!r} (known: {sorted(images)})")
        container["image"] = images[image]
        container.pop("ports", None)
        for variable in container.get("env", []):
            source = variable.get("valueFrom") or {}
            value = downward.downward_value(source, pod, container["name"], status, allocatable)
            if value is not None:
                del variable["valueFrom"]
                variable["value"] = value
            elif variable["name"] == BIND_URL_VARIABLE and "value" in variable:
                variable["value"] = _with_host(variable["value"], pod_ip)
    for volume in spec.get("volumes", []):
        if "hostPath" in volume:
            volume["hostPath"]["path"] = host_root.rstrip("/") + volume["hostPath"]["path"]
    for number, container in enumerate(_containers(spec)):
        path = (termination_files or {}).get(container["name"])
        if path is None:
            continue
        volume = f"{TERMINATION_VOLUME}-{number}"
        spec.setdefault("volumes", []).append({"name": volume, "hostPath": {"path": path, "type": "File"}})
        where = container.get("terminationMessagePath", TERMINATION_MESSAGE_PATH)
        container.setdefault("volumeMounts", []).append({"name": volume, "mountPath": where})
    return local


def secret_refs(pod: Mapping[str, Any]) -> set[str]:
    """Names of the Secrets the pod's containers read (`secretKeyRef`, `envFrom.secretRef`)."""
    names: set[str] = set()
    for container in _containers(dict(pod["spec"])):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    return names
