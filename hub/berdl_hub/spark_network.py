"""The NetworkPolicies that let a user's notebooks and that user's Spark pods reach each other, and no
one else's.

Spark runs without authentication in the clusters the Spark Cluster Manager makes, so the network is the
only wall between users. A static policy cannot say "the same user": each server brings two policies of
its own (`server_objects` kinds), which select by the user's labels:

- `NotebookSide`, in the pod's namespace: the user's notebook pods may reach the user's Spark pods on
  every TCP port (the master's 7077, the executors' RPC and block ports), and be reached by them on
  every TCP port but Spark Connect's 15002 (the driver's and its block manager's, which Spark picks at
  random);
- `ClusterSide`, in the Spark pods' namespace: the user's Spark pods may reach, and be reached by, the
  user's notebook pods and each other (the master and its workers).

What else Spark pods may reach (DNS, the operator's data services, the public internet) is the static
policy deploy/spark/spark-networkpolicy.yaml. Policies add up: two servers of a user bring the same
paths twice, and either keeps them open when the other stops.

The pods are matched by their labels: the notebook's `hub.jupyter.org/username` (KubeSpawner's, taken
from the pod itself) and the Spark pods' `user` (the manager's: the KBase user name as it is). The two
are equal for every KBase name that is a valid label value (63 characters at most, starting and ending
with a letter or digit). For any other name the manager cannot label a Spark pod at all, so no cluster
exists to reach, and no policy is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .server_objects import Kind, ServerPod

NETWORK_POLICY = Kind("NetworkPolicy", "networking.k8s.io/v1", "NetworkingV1Api", "network_policy")

#: The labels the Spark Cluster Manager gives every Spark pod (its templates: app, component, user,
#: cluster-id).
SPARK_APP = {"app": "spark"}
SPARK_USER_LABEL = "user"
#: KubeSpawner's labels of a user pod.
NOTEBOOK_COMPONENT = {
    "app.kubernetes.io/component": "singleuser-server",
    "app.kubernetes.io/managed-by": "kubespawner",
}
NOTEBOOK_USER_LABEL = "hub.jupyter.org/username"

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_EVERY_TCP_PORT = [{"protocol": "TCP"}]
#: The notebook's ports the user's Spark pods may reach: all but Spark Connect's 15002, which only the
#: services the operator names reach (deploy/singleuser-networkpolicy.yaml). Ranges need a network plugin
#: that implements endPort (stable since Kubernetes 1.25).
_EVERY_TCP_PORT_BUT_SPARK_CONNECT = [
    {"protocol": "TCP", "port": 1, "endPort": 15001},
    {"protocol": "TCP", "port": 15003, "endPort": 65535},
]


def is_label_value(text: str) -> bool:
    return bool(_LABEL_VALUE.match(text))


def _selector(labels: dict[str, str], namespace: str, own_namespace: str) -> dict[str, Any]:
    """A peer of a NetworkPolicy rule: pods with `labels`, in `namespace` (the policy's own when equal)."""
    peer: dict[str, Any] = {"podSelector": {"matchLabels": labels}}
    if namespace != own_namespace:
        peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return peer


@dataclass(frozen=True)
class _UserPods:
    """The two sets of pods of one user: their notebooks and their Spark pods."""

    user: str
    spark_namespace: str  # empty: the notebook pods' own

    def spark_ns(self, pod_namespace: str) -> str:
        return self.spark_namespace or pod_namespace

    def notebooks(self, pod: ServerPod) -> dict[str, str] | None:
        username = pod.labels.get(NOTEBOOK_USER_LABEL)
        if not username or not is_label_value(self.user):
            return None  # no Spark pod can carry this user's label: nothing to open
        return {**NOTEBOOK_COMPONENT, NOTEBOOK_USER_LABEL: username}

    def spark(self) -> dict[str, str]:
        return {**SPARK_APP, SPARK_USER_LABEL: self.user}


@dataclass(frozen=True)
class NotebookSide(_UserPods):
    """The user's notebook pods and the user's Spark pods, seen from the notebooks' namespace."""

    kind: Kind = NETWORK_POLICY

    def name(self, pod_name: str) -> str:
        return f"{pod_name}-spark-notebook"

    def namespace(self, pod_namespace: str) -> str:
        return pod_namespace

    def body(self, pod: ServerPod) -> dict[str, Any] | None:
        notebooks = self.notebooks(pod)
        if notebooks is None:
            return None
        spark = _selector(self.spark(), self.spark_ns(pod.namespace), pod.namespace)
        return {
            "spec": {
                "podSelector": {"matchLabels": notebooks},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [spark], "ports": _EVERY_TCP_PORT_BUT_SPARK_CONNECT}],
                "egress": [{"to": [spark], "ports": _EVERY_TCP_PORT}],
            }
        }


@dataclass(frozen=True)
class ClusterSide(_UserPods):
    """The user's Spark pods and the user's notebook pods, seen from the Spark pods' namespace."""

    kind: Kind = NETWORK_POLICY

    def name(self, pod_name: str) -> str:
        return f"{pod_name}-spark-cluster"

    def namespace(self, pod_namespace: str) -> str:
        return self.spark_ns(pod_namespace)

    def body(self, pod: ServerPod) -> dict[str, Any] | None:
        notebooks = self.notebooks(pod)
        if notebooks is None:
            return None
        here = self.spark_ns(pod.namespace)
        peers = [_selector(notebooks, pod.namespace, here), _selector(self.spark(), here, here)]
        return {
            "spec": {
                "podSelector": {"matchLabels": self.spark()},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": peers, "ports": _EVERY_TCP_PORT}],
                "egress": [{"to": peers, "ports": _EVERY_TCP_PORT}],
            }
        }
