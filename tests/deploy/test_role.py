"""deploy/role.yaml grants the hub exactly what its spawner calls: each verb on each resource that real
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
from berdl_hub.spawner import BERDLSpawner

from localhub.standins import hub as hub_standins
from localhub.standins.hub import FakeUser
from localhub.standins.kube import NAMESPACE, throwaway_kube_config
from tests.deploy.rendered import DEPLOY
from tests.hub.hubtest_stack import Stack, running_stack

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


def granted() -> set[tuple[str, str, str]]:
    rules = yaml.safe_load((DEPLOY / "role.yaml").read_text())["rules"]
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def hub_calls(stack: Stack) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every request the spawners sent: kubernetes_asyncio's, not the
    kubelet stand-in's (aiohttp)."""
    calls = set()
    for request in stack.k8s:
        if request.headers.get("User-Agent", "").startswith("Python/"):
            continue  # the kubelet stand-in, an aiohttp client
        assert request.resource is not None, request.url
        if request.method == "PATCH":
            verb = "patch"
        elif request.method == "PUT":
            verb = "update"
        else:
            verb = VERB_OF_ACTION[request.action]
        calls.add((request.resource.group, request.resource.plural, verb))
    return calls


def revived(stack: Stack, spawner: BERDLSpawner) -> BERDLSpawner:
    """The server as a restarted hub finds it: a new spawner with the saved state, no API token."""
    state = spawner.get_state()
    user = FakeUser(
        name=spawner.user.name, auth_state={"kbase_token": spawner.user.auth_state["kbase_token"]}
    )
    again = stack.spawner(user.name, user=user, server=spawner.name, events_enabled=True)
    again.api_token = ""
    again.load_state(state)
    return again


async def every_way_a_server_goes(stack: Stack) -> None:
    stack.k8s.history = "all"
    stack.k8s.resources["v1/events"] = {}
    alice = stack.spawner(events_enabled=True)
    await alice.start()
    async for _ in alice.progress():  # the progress page: the pod's events
        break
    await alice.use_kbase_token("RENEWEDTOKEN234567ABCDEFGHIJKLMN")  # token_refresh: the Secret patched
    again = revived(stack, alice)  # the hub restarts: its first poll reconciles the running server
    assert await again.poll() is None
    await again.stop()
    await again.run_post_stop_hook()

    async def failing_hook(spawner: Any, pod: Any) -> None:
        raise RuntimeError("the operator's hook failed")

    bob = stack.spawner("bob", events_enabled=True, after_pod_created_hook=failing_hook)
    with pytest.raises(RuntimeError):
        await bob.start()

    carol = stack.spawner("carol", events_enabled=True)
    await carol.start()
    del stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, carol.pod_name]  # its node is gone
    await carol.run_post_stop_hook()
    assert (stack.pods(), stack.secrets(), stack.services()) == ([], [], [])


async def recorded() -> set[tuple[str, str, str]]:
    async with running_stack(hub_standins.make_spawner) as stack:
        await every_way_a_server_goes(stack)
        return hub_calls(stack)


def test_the_role_grants_exactly_the_calls_of_the_spawner() -> None:
    calls = asyncio.run(recorded())
    # The run reached every kind of object the hub handles: otherwise the comparison proves little.
    assert {resource for _, resource, _ in calls} == {
        "pods",
        "events",
        "secrets",
        "services",
        "networkpolicies",
    }
    assert granted() == calls, f"granted, never called: {granted() - calls}; called: {calls - granted()}"
