"""A container's environment as the kubelet makes it from the pod: values, Secrets, the downward API.

The kubelet goes through a container's `env` in order and gives each variable

- its `value`, where `$(NAME)` becomes the value of a variable defined before it (`$$` keeps a `$`), and
  a reference to nothing stays as written;
- `valueFrom.secretKeyRef`: that key of that Secret of the pod's namespace;
- `valueFrom.fieldRef`: a field of the pod (`metadata.name`, `namespace`, `uid`, a label or annotation by
  key, `spec.nodeName`, `spec.serviceAccountName`, `status.hostIP`, `status.podIP`, and the `…IPs` lists
  joined by commas);
- `valueFrom.resourceFieldRef`: a request or limit of a container (this one unless `containerName` says
  otherwise), divided by `divisor` (default 1) and rounded up: CPU in whole `divisor`s (cores by
  default), memory and ephemeral storage in bytes. A limit that is not set is the node's allocatable
  amount; a request that is not set is the limit when one is set (the API server's defaulting), else 0.

Before all of these come the variables of the namespace's Services (`service_links`), unless the pod's
`enableServiceLinks` is false; the container's own win over them.

The node stand-in (`localpod`) writes the downward values into the pod as literals, because podman cannot
fill them in; the tests resolve the whole environment with the same rules.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)}
_DECIMAL.update({"k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12)})
_DECIMAL.update({"P": Decimal(10**15), "E": Decimal(10**18)})
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class Unresolvable(ValueError):
    """A variable the kubelet would refuse to make (the container would not start)."""


def quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "2Gi", "1e3", or a JSON number) as a number of its base unit."""
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise Unresolvable(f"not a quantity: {value!r}")
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def node_allocatable() -> dict[str, Decimal]:
    """This machine's CPUs and memory, what a node offers a container that sets no limit."""
    memory = Decimal(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return {"cpu": Decimal(os.cpu_count() or 1), "memory": memory, "ephemeral-storage": memory}


def _container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        if container["name"] == name:
            return dict(container)
    raise Unresolvable(f"the pod has no container {name!r}")


def resource_value(
    source: Mapping[str, Any], pod: Mapping[str, Any], container: str, allocatable: Mapping[str, Decimal]
) -> str:
    """A resourceFieldRef's value for `container` of `pod`."""
    kind, _, resource = str(source["resource"]).partition(".")
    if kind not in ("limits", "requests") or resource not in ("cpu", "memory", "ephemeral-storage"):
        raise Unresolvable(f"resourceFieldRef: unsupported resource {source['resource']!r}")
    resources = _container(pod, source.get("containerName") or container).get("resources") or {}
    limit = (resources.get("limits") or {}).get(resource)
    request = (resources.get("requests") or {}).get(resource, limit)
    if kind == "limits":
        amount = allocatable[resource] if limit is None else quantity(limit)
    else:
        amount = Decimal(0) if request is None else quantity(request)
    divisor = quantity(source.get("divisor", "1"))
    if divisor <= 0:
        raise Unresolvable(f"resourceFieldRef: divisor {source.get('divisor')!r}")
    if resource == "cpu":  # in whole millicores first (a quantity's MilliValue, rounded up), then divided
        return str(math.ceil(Decimal(math.ceil(amount * 1000)) / math.ceil(divisor * 1000)))
    return str(math.ceil(Decimal(math.ceil(amount)) / math.ceil(divisor)))  # whole bytes, rounded up


def field_value(path: str, pod: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    """A fieldRef's value: a field of the pod as the API holds it, or of its `status` as the kubelet
    knows it."""
    meta, spec = pod["metadata"], pod["spec"]
    keyed = re.match(r"^metadata\.(labels|annotations)\['([^']+)'\]$", path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path not in simple:
        raise Unresolvable(f"fieldRef: unsupported field {path!r}")
    return str(simple[path] or "")


def downward_value(
    source: Mapping[str, Any],
    pod: Mapping[str, Any],
    container: str,
    status: Mapping[str, Any],
    allocatable: Mapping[str, Decimal],
) -> str | None:
    """The value of a `valueFrom` that reads the pod itself; None for any other source (a Secret's key)."""
    if "fieldRef" in source:
        return field_value(source["fieldRef"]["fieldPath"], pod, status)
    if "resourceFieldRef" in source:
        return resource_value(source["resourceFieldRef"], pod, container, allocatable)
    return None


def _expanded(value: str, defined: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return defined[name] if name in defined else match.group(0)

    return _REFERENCE.sub(one, value)


def service_links(services: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The variables the kubelet gives a pod for each Service of its namespace that has a cluster IP,
    unless the pod's `enableServiceLinks` is false: `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT` (and one per
    named port), `NAME_PORT` and the Docker-link forms, NAME being the Service's upper-cased, `-` as `_`."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ip, ports = spec.get("clusterIP"), spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            protocol = port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
            prefix = f"{name}_PORT_{port['port']}_{protocol}"
            env[prefix] = f"{protocol.lower()}://{ip}:{port['port']}"
            env.update({f"{prefix}_PROTO": protocol.lower(), f"{prefix}_PORT": str(port["port"])})
            env[f"{prefix}_ADDR"] = ip
        env[f"{name}_PORT"] = f"{ports[0].get('protocol', 'TCP').lower()}://{ip}:{ports[0]['port']}"
    return env


def environment(
    pod: Mapping[str, Any],
    container: str,
    *,
    status: Mapping[str, Any],
    secrets: Mapping[str, Mapping[str, str]],
    allocatable: Mapping[str, Decimal],
    services: Iterable[Mapping[str, Any]] = (),
) -> dict[str, str]:
    """The environment of `container` in `pod`, as the kubelet makes it; `secrets` are the namespace's
    Secrets by name, their data decoded; `services` the namespace's Services (`service_links`)."""
    links = service_links(services) if pod["spec"].get("enableServiceLinks", True) else {}
    env: dict[str, str] = {}
    for variable in _container(pod, container).get("env") or []:
        name, source = variable["name"], variable.get("valueFrom")
        if source is None:
            env[name] = _expanded(str(variable.get("value", "")), {**links, **env})
            continue
        value = downward_value(source, pod, container, status, allocatable)
        if value is None and "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = secrets.get(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise Unresolvable(f"{name}: Secret {ref['name']!r} has no key {ref['key']!r}")
            value = data[ref["key"]]
        if value is None:
            raise Unresolvable(f"{name}: unsupported valueFrom {sorted(source)}")
        env[name] = value
    return {**links, **env}  # the container's own variables win over the Services' links
