"""The objects a server owns beside its pod (berdl_hub.server_objects): made once the pod has a uid,
deleted once on every way out, given back to running servers by a restarted hub, and found by their label
when they live in another namespace.

The credentials Secret is the one kind the spawner has today; these tests add a ConfigMap in another
namespace (`Marker`), as the per-user NetworkPolicies in the Spark namespace will be, to show that a new
kind gets the guarantees without code of its own. What the Secret holds is tested in
test_secret_and_cluster.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import kmock
import pytest
from berdl_hub import server_objects, upstream
from berdl_hub.server_objects import OWNER_POD_UID, Kind, ServerPod
from berdl_hub.spawner import BERDLSpawner
from kubernetes_asyncio.client.exceptions import ApiException

from localhub.standins.kube import NAMESPACE
from tests.hub.hubtest_stack import TOKEN, Stack

pytestmark = pytest.mark.asyncio

OTHER_NAMESPACE = "spark"
CONFIG_MAP = Kind("ConfigMap", "v1", "CoreV1Api", "config_map")


class Marker:
    """A per-server ConfigMap, in the pod's namespace or another."""

    kind = CONFIG_MAP

    def __init__(self, namespace: str | None = None) -> None:
        self._namespace = namespace

    def name(self, pod_name: str) -> str:
        return f"{pod_name}-marker"

    def namespace(self, pod_namespace: str) -> str:
        return self._namespace or pod_namespace

    def body(self, pod: ServerPod) -> dict[str, Any] | None:
        return {"data": {"pod": pod.name}}


def with_marker(spawner: BERDLSpawner, namespace: str | None = OTHER_NAMESPACE) -> BERDLSpawner:
    """The spawner, owning a Marker beside its Secret (as a kind added by an upgrade would be)."""
    owned = spawner.owned_objects
    spawner.owned_objects = lambda: [*owned(), Marker(namespace)]  # type: ignore[method-assign]
    return spawner


def objects(stack: Stack, resource: str, namespace: str) -> dict[str, dict[str, Any]]:
    kind = kmock.resource(resource)
    return {
        key[2]: obj.raw
        for key, obj in stack.k8s.objects.items()
        if key[0] == kind and key[1] == namespace and not obj.deleted
    }


def markers(stack: Stack, namespace: str = OTHER_NAMESPACE) -> dict[str, dict[str, Any]]:
    return objects(stack, "v1/configmaps", namespace)


def pod_uid(stack: Stack, name: str) -> str:
    return str(objects(stack, "v1/pods", NAMESPACE)[name]["metadata"]["uid"])


@pytest.fixture
def stack_with_configmaps(stack: Stack) -> Stack:
    stack.k8s.resources["v1/configmaps"] = {}
    return stack


async def delete_pod(stack: Stack, spawner: BERDLSpawner) -> None:
    """Delete the pod behind the hub's back, and wait until KubeSpawner's reflector has seen it go."""
    url = f"{stack.k8s_url}/api/v1/namespaces/{NAMESPACE}/pods/{spawner.pod_name}"
    async with aiohttp.ClientSession() as session, session.delete(url) as response:
        assert response.status == 200
    for _ in range(200):
        if upstream.reflected_pod(spawner) is None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the reflector still sees the deleted pod")


# --- made once the pod exists, deleted once ------------------------------------------------------------


async def test_an_object_in_another_namespace_carries_its_pods_uid_and_goes_with_the_server(
    stack_with_configmaps: Stack,
) -> None:
    stack = stack_with_configmaps
    spawner = with_marker(stack.spawner())
    await spawner.start()
    (name,) = markers(stack)
    marker = markers(stack)[name]
    assert name == "jupyter-alice-marker"
    assert marker["metadata"]["labels"][OWNER_POD_UID] == pod_uid(stack, spawner.pod_name)
    assert "ownerReferences" not in marker["metadata"]  # no owner can reach across namespaces
    assert marker["metadata"]["labels"]["component"] == "singleuser-server"  # the pod's own labels too

    deletes = stack.k8s[f"delete /api/v1/namespaces/{OTHER_NAMESPACE}/configmaps/jupyter-alice-marker"]
    await spawner.stop()
    await spawner.run_post_stop_hook()
    assert markers(stack) == {}
    assert stack.secrets() == []
    assert len(deletes) == 1  # the post-stop hook does not ask again


async def test_an_object_in_the_pods_namespace_is_owned_by_the_pod(stack_with_configmaps: Stack) -> None:
    stack = stack_with_configmaps
    spawner = with_marker(stack.spawner(), namespace=None)
    await spawner.start()
    marker = markers(stack, NAMESPACE)["jupyter-alice-marker"]
    (owner,) = marker["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Pod",
        "jupyter-alice",
        pod_uid(stack, "jupyter-alice"),
    )
    assert OWNER_POD_UID not in marker["metadata"]["labels"]
    await spawner.stop()
    assert markers(stack, NAMESPACE) == {}


async def test_a_failed_start_deletes_what_it_made(stack_with_configmaps: Stack) -> None:
    stack = stack_with_configmaps

    async def failing_hook(spawner: BERDLSpawner, pod: dict[str, Any]) -> None:
        raise RuntimeError("the operator's hook failed")

    spawner = with_marker(stack.spawner(after_pod_created_hook=failing_hook))
    with pytest.raises(RuntimeError, match="operator's hook"):
        await spawner.start()
    assert markers(stack) == {}
    assert stack.secrets() == []
    assert stack.pods() == []
    assert stack.spark.clusters == {}


async def test_a_lost_pod_leaves_nothing_after_the_post_stop_hook(stack_with_configmaps: Stack) -> None:
    stack = stack_with_configmaps
    spawner = with_marker(stack.spawner())
    await spawner.start()
    del stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, spawner.pod_name]  # the node is gone
    await spawner.run_post_stop_hook()  # what JupyterHub runs when its poll finds the pod gone
    assert markers(stack) == {}
    assert stack.secrets() == []
    assert stack.spark.clusters == {}


# --- a restarted hub ---------------------------------------------------------------------------------


async def test_a_restarted_hub_gives_a_running_server_the_kind_it_lacks(stack_with_configmaps: Stack) -> None:
    stack = stack_with_configmaps
    spawner = stack.spawner()
    await spawner.start()
    secret_before = objects(stack, "v1/secrets", NAMESPACE)["jupyter-alice-credentials"]
    assert markers(stack) == {}  # started before the upgrade that added the kind

    upgraded = with_marker(stack.revived(spawner))
    assert await upgraded.poll() is None  # JupyterHub polls every server it finds at start
    assert markers(stack)["jupyter-alice-marker"]["metadata"]["labels"][OWNER_POD_UID] == pod_uid(
        stack, spawner.pod_name
    )
    # What the server had is left as it was.
    assert objects(stack, "v1/secrets", NAMESPACE)["jupyter-alice-credentials"] == secret_before

    await upgraded.stop()
    assert markers(stack) == {}
    assert stack.secrets() == []


async def test_a_restarted_hub_never_makes_a_secret_with_less_in_it(stack: Stack) -> None:
    spawner = stack.spawner()
    await spawner.start()
    del stack.k8s.objects[kmock.resource("v1/secrets"), NAMESPACE, "jupyter-alice-credentials"]
    again = stack.revived(spawner)
    await again.run_auth_state_hook({"kbase_token": TOKEN})  # the user's token, but no API token
    reads = stack.k8s[f"get /api/v1/namespaces/{NAMESPACE}/secrets/jupyter-alice-credentials"]
    assert await again.poll() is None
    assert stack.secrets() == []
    assert len(reads) == 0  # nor read: the hub's Role has no `get` on Secrets
    await again.stop()


async def test_a_restarted_hub_deletes_what_a_lost_pod_left_in_another_namespace(
    stack_with_configmaps: Stack,
) -> None:
    stack = stack_with_configmaps
    alice = with_marker(stack.spawner())
    bob = with_marker(stack.spawner("bob"))
    await alice.start()
    await bob.start()
    # The hub dies; bob's node goes with it (his pod is gone, his ConfigMap is not).
    await delete_pod(stack, bob)
    assert set(markers(stack)) == {"jupyter-alice-marker", "jupyter-bob-marker"}

    alice_again = with_marker(stack.revived(alice))
    assert await alice_again.poll() is None
    assert set(markers(stack)) == {"jupyter-alice-marker"}
    await alice_again.stop()
    assert markers(stack) == {}


# --- the parts, without a spawner ----------------------------------------------------------------------


async def test_placed_adds_name_namespace_labels_and_owner() -> None:
    pod = ServerPod("jupyter-alice", NAMESPACE, "uid-1", {"component": "singleuser-server"})
    here = server_objects.placed(Marker(None), {"data": {}, "metadata": {"labels": {"a": "b"}}}, pod)
    assert here["metadata"]["namespace"] == NAMESPACE
    assert here["metadata"]["labels"] == {"component": "singleuser-server", "a": "b"}
    assert here["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    there = server_objects.placed(Marker(OTHER_NAMESPACE), {"data": {}}, pod)
    assert there["metadata"]["namespace"] == OTHER_NAMESPACE
    assert there["metadata"]["labels"][OWNER_POD_UID] == "uid-1"
    assert "ownerReferences" not in there["metadata"]
    assert (there["apiVersion"], there["kind"]) == ("v1", "ConfigMap")


async def test_each_kind_is_named_from_its_pods_name_alone(
    make_spawner: Callable[..., BERDLSpawner], kube_reset: None
) -> None:
    """A hub that knows only the pod's name (a lost pod, a restart) can delete every object by name."""
    spawner = make_spawner()
    for owned in spawner.owned_objects():
        assert owned.name(spawner.pod_name).startswith(spawner.pod_name)


class Answered:
    """What kubernetes_asyncio returns with _preload_content=False: the HTTP response, unread."""

    status, reason = 200, "OK"

    def release(self) -> None:
        pass


class SlowApi:
    """A CoreV1Api whose creates can be slower than the call's time-out: the object is made, the answer
    comes too late, and a repeated create meets it (409), as on a busy API server. Writes are sent
    unread (server_objects' Calls.write), as their answers are."""

    def __init__(self, *, leftover: bool, late: int) -> None:
        self.names: set[str] = {"m"} if leftover else set()
        self.late = late  # how many creates answer only after the time-out
        self.creates = 0
        self.deletes = 0

    async def create_namespaced_config_map(
        self, namespace: str, body: dict[str, Any], _preload_content: bool = True
    ) -> Answered:
        self.creates += 1
        if body["metadata"]["name"] in self.names:
            raise ApiException(status=409, reason="Conflict")
        self.names.add(body["metadata"]["name"])
        if self.late:
            self.late -= 1
            await asyncio.sleep(1)
        return Answered()

    async def delete_namespaced_config_map(
        self, name: str, namespace: str, _preload_content: bool = True
    ) -> Answered:
        self.deletes += 1
        self.names.discard(name)
        return Answered()


@pytest.mark.parametrize(
    ("leftover", "late", "creates", "deletes"),
    [
        (False, 0, 1, 0),  # made at once
        (True, 0, 2, 1),  # an earlier pod's object: deleted, made again
        (False, 1, 3, 1),  # the first create landed unanswered: it met itself, deleted it, made it again
        (True, 1, 3, 1),  # after the leftover's delete, a create landed unanswered: its 409 is this one
    ],
)
async def test_a_create_that_landed_unanswered_is_not_a_conflict(
    leftover: bool, late: int, creates: int, deletes: int
) -> None:
    api = SlowApi(leftover=leftover, late=late)
    calls = server_objects.Calls(lambda _: api, timeout=0.2, retry_for=5)
    body = {"metadata": {"name": "m", "namespace": NAMESPACE}}
    await server_objects.create(calls, body, CONFIG_MAP)
    assert api.names == {"m"}
    assert (api.creates, api.deletes) == (creates, deletes)


async def test_a_conflict_nobody_explains_is_an_error() -> None:
    """A 409 at once, after the leftover was deleted, is someone else's object: not taken as ours."""

    class Crowded(SlowApi):
        async def delete_namespaced_config_map(
            self, name: str, namespace: str, _preload_content: bool = True
        ) -> Answered:
            self.deletes += 1  # deleted, and made again at once by someone else
            return Answered()

    api = Crowded(leftover=True, late=0)
    calls = server_objects.Calls(lambda _: api, timeout=0.2, retry_for=5)
    with pytest.raises(server_objects.ObjectError, match="409 Conflict"):
        await server_objects.create(calls, {"metadata": {"name": "m", "namespace": NAMESPACE}}, CONFIG_MAP)
