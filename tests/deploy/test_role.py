"""deploy/role.yaml (and deploy/spark-namespace/role.yaml, where the Spark pods have a namespace of their
own) grants the hub exactly what its spawner calls: each verb on each resource that real
BERDLSpawners send the Kubernetes API (the kmock emulator, recording every request) through every way
a server goes: a start and a stop with the pod's events followed, a renewed KBase token given to a
running server (its Secret patched), a hub restart that reconciles a running server, a start the
operator's hook fails, a pod lost behind the hub's back. Nothing more: a verb the spawner never calls
is a right whoever takes the hub over gets for free."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import kmock
import pytest
import yaml

from localhub.standins import hub as hub_standins
from localhub.standins.kube import NAMESPACE, throwaway_kube_config
from tests.deploy.rendered import DEPLOY
from tests.hub.hubtest_stack import Stack, running_stack

SPARK_NAMESPACE = "berdl-spark"  # what deploy/spark-namespace/ names, in a test of its own

VERB_OF_ACTION = {
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.FETCH: "get",
    kmock.action.CREATE: "create",
    kmock.action.DELETE: "delete",
}


@pytest.fixture(scope="module", autouse=True)
def kube_config() -> Iterator[None]:
    with throwaway_kube_config():
        yield


def granted(role: str = "role.yaml") -> set[tuple[str, str, str]]:
    rules = yaml.safe_load((DEPLOY / role).read_text())["rules"]
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def hub_calls(stack: Stack) -> dict[str, set[tuple[str, str, str]]]:
    """(API group, resource, verb) of every request the spawners sent, by namespace: kubernetes_asyncio's,
    not the kubelet stand-in's (aiohttp)."""
    calls: dict[str, set[tuple[str, str, str]]] = {}
    for request in stack.k8s:
        if request.headers.get("User-Agent", "").startswith("Python/"):
            continue  # the kubelet stand-in, an aiohttp client
        assert request.resource is not None, request.url
        assert request.namespace, f"a call outside any namespace, which no Role grants: {request.url}"
        if request.method == "PATCH":
            verb = "patch"
        elif request.method == "PUT":
            verb = "update"
        else:
            verb = VERB_OF_ACTION[request.action]
        calls.setdefault(request.namespace, set()).add(
            (request.resource.group, request.resource.plural, verb)
        )
    return calls


async def every_way_a_server_goes(stack: Stack, **traits: Any) -> None:
    stack.k8s.history = "all"
    stack.k8s.resources["v1/events"] = {}
    alice = stack.spawner(events_enabled=True, **traits)
    await alice.start()
    async for _ in alice.progress():  # the progress page: the pod's events
        break
    await alice.use_kbase_token("RENEWEDTOKEN234567ABCDEFGHIJKLMN")  # token_refresh: the Secret patched
    again = stack.revived(
        alice, events_enabled=True, **traits
    )  # the hub restarts: its first poll reconciles the running server
    assert await again.poll() is None
    await again.stop()
    await again.run_post_stop_hook()

    async def failing_hook(spawner: Any, pod: Any) -> None:
        raise RuntimeError("the operator's hook failed")

    bob = stack.spawner("bob", events_enabled=True, after_pod_created_hook=failing_hook, **traits)
    with pytest.raises(RuntimeError):
        await bob.start()

    carol = stack.spawner("carol", events_enabled=True, **traits)
    await carol.start()
    del stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, carol.pod_name]  # its node is gone
    await carol.run_post_stop_hook()
    assert (stack.pods(), stack.secrets(), stack.services()) == ([], [], [])


async def recorded(**traits: Any) -> dict[str, set[tuple[str, str, str]]]:
    async with running_stack(hub_standins.make_spawner) as stack:
        await every_way_a_server_goes(stack, **traits)
        return hub_calls(stack)


def test_the_role_grants_exactly_the_calls_of_the_spawner() -> None:
    calls = asyncio.run(recorded())
    assert list(calls) == [NAMESPACE]
    # The run reached every kind of object the hub handles: otherwise the comparison proves little.
    assert {resource for _, resource, _ in calls[NAMESPACE]} == {
        "pods",
        "events",
        "secrets",
        "services",
        "networkpolicies",
    }
    called = calls[NAMESPACE]
    assert granted() == called, f"granted, never called: {granted() - called}; called: {called - granted()}"


def test_with_the_spark_pods_in_their_own_namespace_each_role_grants_exactly_the_calls_there() -> None:
    """deploy/spark-namespace/: the hub's Role there, for the Spark-side NetworkPolicies, and the hub's own
    Role for the rest, each exactly what the spawner calls in that namespace."""
    calls = asyncio.run(recorded(spark_namespace=SPARK_NAMESPACE))
    assert set(calls) == {NAMESPACE, SPARK_NAMESPACE}
    for namespace, role in ((NAMESPACE, "role.yaml"), (SPARK_NAMESPACE, "spark-namespace/role.yaml")):
        called, grants = calls[namespace], granted(role)
        assert grants == called, (
            f"{role}: granted, never called: {grants - called}; called: {called - grants}"
        )
