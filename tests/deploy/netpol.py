"""What a set of NetworkPolicy objects allows, as the Kubernetes documentation describes it.

A connection from one peer to another, on a port and a protocol, is allowed when the source's egress
and the destination's ingress both allow it. A side that no policy of that direction selects allows
everything; otherwise some rule of a selecting policy must match both the other peer (`from`/`to`) and
the port (`ports`). Peers are pods (labels, namespace, named container ports) or plain addresses.

An `ipBlock` matches any peer with an address in it, pods included: some network plugins match pod
addresses with ipBlocks, others never do, so a test that something is refused must not rely on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Peer:
    """A pod (labels set) or an address outside the cluster (labels None)."""

    name: str
    ip: str
    labels: Mapping[str, str] | None = None
    namespace: str = ""
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports
    #: Labels of the pod's namespace besides the name Kubernetes gives every namespace.
    more_namespace_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {**self.more_namespace_labels, "kubernetes.io/metadata.name": self.namespace}


def pod(name: str, ip: str, manifest: Mapping[str, Any], namespace: str) -> Peer:
    """A peer for a pod manifest (a Pod, or a Deployment's pod template), with its named ports."""
    spec = manifest["spec"]
    ports = {
        port["name"]: port["containerPort"]
        for container in spec["containers"]
        for port in container.get("ports", [])
        if "name" in port
    }
    return Peer(name, ip, dict(manifest["metadata"]["labels"]), namespace, ports)


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions; empty selects everything)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        matched = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not matched:
            return False
    return True


def _in_block(ip: str, block: Mapping[str, Any]) -> bool:
    address = ipaddress.ip_address(ip)
    network = ipaddress.ip_network(block["cidr"])
    if address.version != network.version or address not in network:
        return False
    return not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))


def _peer_matches(entry: Mapping[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in entry:
        return _in_block(peer.ip, entry["ipBlock"])
    if peer.labels is None:
        return False  # selectors match pods only
    if "namespaceSelector" in entry:
        if not selects(entry["namespaceSelector"], peer.namespace_labels):
            return False
    elif peer.namespace != policy_namespace:
        return False  # a podSelector alone means the policy's own namespace
    return "podSelector" not in entry or selects(entry["podSelector"], peer.labels)


def _port_matches(entry: Mapping[str, Any], port: int, protocol: str, destination: Peer) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):  # a named port of the destination pod
        return destination.ports.get(wanted) == port
    return wanted <= port <= entry.get("endPort", wanted)


def _side_allows(
    policies: Iterable[Mapping[str, Any]],
    direction: str,
    subject: Peer,
    other: Peer,
    destination: Peer,
    port: int,
    protocol: str,
) -> bool:
    """Whether `subject`'s policies of `direction` ("Ingress"/"Egress") allow traffic with `other`."""
    if subject.labels is None:
        return True  # an address outside the cluster has no policies
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            if peers is not None and not any(
                _peer_matches(e, other, policy["metadata"]["namespace"]) for e in peers
            ):
                continue
            ports = rule.get("ports")
            if ports is None or any(_port_matches(e, port, protocol, destination) for e in ports):
                return True
    return False


def allowed(
    policies: Iterable[Mapping[str, Any]], source: Peer, destination: Peer, port: int, protocol: str = "TCP"
) -> bool:
    policies = list(policies)
    return _side_allows(
        policies, "Egress", source, destination, destination, port, protocol
    ) and _side_allows(policies, "Ingress", destination, source, destination, port, protocol)


def port_classes(policies: Iterable[Mapping[str, Any]], destination: Peer) -> list[int]:
    """Ports that stand for every TCP port, 1 to 65535, towards `destination`: whether a connection is
    allowed changes only where some rule's port range starts or ends, so each edge, the ports either side
    of it and the ends of the range cover them all (a test over these is a test over every port)."""
    edges = {1, 65535, *destination.ports.values()}
    for policy in policies:
        for rule in [*policy["spec"].get("ingress", []), *policy["spec"].get("egress", [])]:
            for entry in rule.get("ports") or []:
                wanted = entry.get("port")
                if isinstance(wanted, int):
                    edges.update((wanted, entry.get("endPort", wanted)))
    around = {port + step for port in edges for step in (-1, 0, 1)}
    return sorted(port for port in around if 1 <= port <= 65535)


def selecting(policies: Iterable[Mapping[str, Any]], subject: Peer) -> list[str]:
    """Names of the policies that select the pod."""
    return [
        p["metadata"]["name"]
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and selects(p["spec"]["podSelector"], subject.labels or {})
    ]
