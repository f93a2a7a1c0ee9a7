"""localhub.downward resolves a container's environment by the kubelet's rules (the Kubernetes
documentation of the downward API, of resource quantities and of dependent variables)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from localhub.downward import Unresolvable, environment, quantity, resource_value

NODE = {"cpu": Decimal(8), "memory": Decimal(32 * 2**30), "ephemeral-storage": Decimal(2**40)}
STATUS = {"podIP": "10.1.2.3", "podIPs": [{"ip": "10.1.2.3"}], "hostIP": "192.168.0.7"}


def a_pod(env: list[dict[str, Any]], resources: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    container = {"name": "notebook", "env": env, "resources": resources or {}}
    return {
        "metadata": {"name": "jupyter-alice", "namespace": "berdl", "uid": "u-1", "labels": {"a": "b"}},
        "spec": {"containers": [container], "nodeName": "node-7", **spec},
    }


def resolved(pod: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    return environment(
        pod, "notebook", status=STATUS, secrets=kwargs.pop("secrets", {}), allocatable=NODE, **kwargs
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("1.5", "1.5"),
        ("2Gi", str(2 * 2**30)),
        ("6G", "6000000000"),
        ("1e3", "1E+3"),
        (0.5, "0.5"),
    ],
)
def test_quantities(text: Any, value: str) -> None:
    assert quantity(text) == Decimal(value)


def test_a_bad_quantity_is_named() -> None:
    with pytest.raises(Unresolvable, match="not a quantity: '2 GB'"):
        quantity("2 GB")


def field(path: str) -> dict[str, Any]:
    return {"fieldRef": {"fieldPath": path}}


def test_fields_of_the_pod() -> None:
    paths = {
        "IP": "status.podIP",
        "IPS": "status.podIPs",
        "HOST": "status.hostIP",
        "NAME": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "LABEL": "metadata.labels['a']",
        "NODE": "spec.nodeName",
    }
    env = resolved(a_pod([{"name": n, "valueFrom": field(p)} for n, p in paths.items()]))
    assert env == {
        "IP": "10.1.2.3",
        "IPS": "10.1.2.3",
        "HOST": "192.168.0.7",
        "NAME": "jupyter-alice",
        "NS": "berdl",
        "UID": "u-1",
        "LABEL": "b",
        "NODE": "node-7",
    }


def test_resources_round_up_in_whole_divisors() -> None:
    pod = a_pod([], {"requests": {"cpu": "500m", "memory": "1.5Gi"}, "limits": {"cpu": 2.5, "memory": "2Gi"}})
    assert resource_value({"resource": "requests.cpu"}, pod, "notebook", NODE) == "1"  # 0.5 core: 1
    assert resource_value({"resource": "limits.cpu"}, pod, "notebook", NODE) == "3"
    assert resource_value({"resource": "requests.cpu", "divisor": "1m"}, pod, "notebook", NODE) == "500"
    assert resource_value({"resource": "limits.memory"}, pod, "notebook", NODE) == str(2 * 2**30)
    assert resource_value({"resource": "requests.memory", "divisor": "1Gi"}, pod, "notebook", NODE) == "2"


def test_a_missing_limit_is_the_nodes_and_a_missing_request_the_limit() -> None:
    only_limits = a_pod([], {"limits": {"memory": "4Gi"}})
    assert resource_value({"resource": "limits.cpu"}, only_limits, "notebook", NODE) == "8"
    assert resource_value({"resource": "requests.memory"}, only_limits, "notebook", NODE) == str(4 * 2**30)
    assert resource_value({"resource": "requests.cpu"}, only_limits, "notebook", NODE) == "0"


def test_values_refer_to_variables_defined_before_them() -> None:
    env = resolved(
        a_pod(
            [
                {"name": "A", "value": "x"},
                {"name": "B", "value": "$(A)-$(LATER)-$$(A)"},
                {"name": "LATER", "value": "y"},
            ]
        )
    )
    assert env["B"] == "x-$(LATER)-$(A)"


def test_secrets_and_a_missing_one() -> None:
    ref = {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}
    pod = a_pod([{"name": "TOKEN", "valueFrom": ref}])
    assert resolved(pod, secrets={"creds": {"TOKEN": "t"}}) == {"TOKEN": "t"}
    with pytest.raises(Unresolvable, match="Secret 'creds' has no key 'TOKEN'"):
        resolved(pod)
    optional = a_pod(
        [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {**ref["secretKeyRef"], "optional": True}}}]
    )
    assert resolved(optional) == {}


def test_service_links_unless_the_pod_turns_them_off() -> None:
    service = {
        "metadata": {"name": "jupyter-bob"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "spark-connect", "port": 15002}]},
    }
    headless = {"metadata": {"name": "x"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}
    env = resolved(
        a_pod([{"name": "JUPYTER_BOB_SERVICE_HOST", "value": "mine"}]), services=[service, headless]
    )
    assert env["JUPYTER_BOB_SERVICE_PORT_SPARK_CONNECT"] == "15002"
    assert env["JUPYTER_BOB_PORT"] == "tcp://10.96.0.20:15002"
    assert env["JUPYTER_BOB_SERVICE_HOST"] == "mine"  # the container's own wins
    assert not [name for name in env if name.startswith("X_")]
    off = a_pod([], enableServiceLinks=False)
    assert resolved(off, services=[service]) == {}
