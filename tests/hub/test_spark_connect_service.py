"""Each server's Spark Connect Service (berdl_hub.spark_connect), through start() and stop() of real
BERDLSpawners against the kmock Kubernetes emulator: made with the server, owned by its pod, selecting
that pod only, named as production's tools expect where that name is free, never shared, and gone with
the server on every way out. kmock does no garbage collection: a Service that is gone here was deleted
by the spawner itself."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import kmock
import pytest
from berdl_hub import spark_connect, upstream
from berdl_hub.spark_connect import LABEL, fallback_name, production_name
from berdl_hub.spawner import BERDLSpawner, SpawnRefused

from localhub.standins.hub import FakeUser, kbase_token
from localhub.standins.kube import NAMESPACE
from tests.hub.hubtest_stack import Stack, pod_env

pytestmark = pytest.mark.asyncio

LONG_NAME = "a" * 30 + "_" + "b" * 29  # 60 characters: no production Service name can hold it


def raw(stack: Stack, resource: str, name: str) -> dict[str, Any]:
    return stack.k8s.objects[kmock.resource(resource), NAMESPACE, name].raw


def service_of(stack: Stack, spawner: BERDLSpawner) -> dict[str, Any]:
    """The Service the server's SPARK_CONNECT_URL names; it must exist."""
    url = pod_env(stack, spawner)["SPARK_CONNECT_URL"]
    assert url.startswith("sc://"), url
    assert url.endswith(f".{NAMESPACE}:15002"), url
    name = url.removeprefix("sc://").removesuffix(f".{NAMESPACE}:15002")
    assert name in stack.services(), (name, stack.services())
    return raw(stack, "v1/services", name)


def selected_pods(stack: Stack, service: dict[str, Any]) -> list[str]:
    """The live pods the Service's selector selects."""
    selector = service["spec"]["selector"]
    return [
        name
        for name in stack.pods()
        if selector.items() <= (raw(stack, "v1/pods", name)["metadata"].get("labels") or {}).items()
    ]


def user(name: str) -> FakeUser:
    return FakeUser(name=name, auth_state={"kbase_token": kbase_token(name)})


def spawner_of(stack: Stack, name: str, server: str = "", owner: FakeUser | None = None) -> BERDLSpawner:
    owner = owner or user(name)
    stack.spark.tokens.add(kbase_token(name))
    stack.governance.credentials[kbase_token(name)] = {
        "username": name,
        "access_key": f"ak-{len(name)}",
        "secret_key": f"sk-{len(name)}-0123456789",
    }
    return stack.spawner(name, token=kbase_token(name), user=owner, server=server)


async def test_a_server_gets_its_service_owned_by_its_pod_and_stop_deletes_it(stack: Stack) -> None:
    spawner = stack.spawner()
    await spawner.start()
    service = service_of(stack, spawner)
    pod = raw(stack, "v1/pods", spawner.pod_name)
    assert service["metadata"]["name"] == "jupyter-alice"  # the production name, free
    assert pod_env(stack, spawner)["SPARK_CONNECT_URL"] == "sc://jupyter-alice.berdl:15002"
    (owner,) = service["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", spawner.pod_name, pod["metadata"]["uid"])
    assert service["spec"]["type"] == "ClusterIP"
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("notebook-port", 8888, 8888),
        ("spark-connect", 15002, 15002),
    }
    assert selected_pods(stack, service) == [spawner.pod_name]
    await spawner.stop()
    await spawner.run_post_stop_hook()
    assert stack.services() == []
    deletes = stack.k8s[f"delete /api/v1/namespaces/{NAMESPACE}/services/jupyter-alice"]
    assert len(deletes) == 1  # the post-stop hook after the stop does not ask again


async def test_a_failed_start_leaves_no_service(stack: Stack) -> None:
    async def failing_hook(spawner: BERDLSpawner, pod: dict[str, Any]) -> None:
        raise RuntimeError("the operator's hook failed")

    spawner = stack.spawner(after_pod_created_hook=failing_hook)  # fails once the objects are made
    with pytest.raises(RuntimeError, match="operator's hook"):
        await spawner.start()
    assert (stack.pods(), stack.secrets(), stack.services()) == ([], [], [])


async def test_a_start_refused_before_its_pod_frees_the_name_it_chose(stack: Stack) -> None:
    """john_doe's start chooses jupyter-john-doe, then Spark refuses it before any pod exists: the name
    is free again for john__doe."""
    stack.spark.mode = "401"
    first = spawner_of(stack, "john_doe")
    with pytest.raises(SpawnRefused):
        await first.start()
    assert (stack.pods(), stack.services()) == ([], [])
    stack.spark.mode = "ok"
    second = spawner_of(stack, "john__doe")
    await second.start()
    assert service_of(stack, second)["metadata"]["name"] == "jupyter-john-doe"
    await second.stop()


async def test_a_lost_pod_leaves_no_service_after_the_post_stop_hook(stack: Stack) -> None:
    spawner = stack.spawner()
    await spawner.start()
    del stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, spawner.pod_name]  # the node is gone
    await spawner.run_post_stop_hook()  # what JupyterHub runs when its poll finds the pod gone
    assert (stack.services(), stack.secrets()) == ([], [])


async def test_two_users_with_two_named_servers_each_never_share_a_service(stack: Stack) -> None:
    spawners = []
    for name in ("alice", "bob"):
        owner = user(name)
        spawners += [spawner_of(stack, name, server, owner) for server in ("", "analysis")]
    for spawner in spawners:
        await spawner.start()
    services = [service_of(stack, spawner) for spawner in spawners]
    names = [service["metadata"]["name"] for service in services]
    assert len(set(names)) == 4, names
    assert (names[0], names[2]) == ("jupyter-alice", "jupyter-bob")
    for spawner, service in zip(spawners, services, strict=True):
        assert selected_pods(stack, service) == [spawner.pod_name]  # each Service reaches its own pod
    for spawner in spawners:
        await spawner.stop()
    assert stack.services() == []


async def test_john_doe_and_john__doe_each_get_a_service_of_their_own(stack: Stack) -> None:
    """Production's rule gives both jupyter-john-doe: the first to start holds it, the other gets a name
    of its own, and its start leaves the first's Service as it was."""
    assert production_name("john_doe") == production_name("john__doe") == "jupyter-john-doe"
    john_doe, john__doe = spawner_of(stack, "john_doe"), spawner_of(stack, "john__doe")
    await john_doe.start()
    before = service_of(stack, john_doe)
    await john__doe.start()
    after = raw(stack, "v1/services", "jupyter-john-doe")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # not replaced
    assert selected_pods(stack, after) == [john_doe.pod_name]
    other = service_of(stack, john__doe)
    assert other["metadata"]["name"] == fallback_name(john__doe.pod_name)
    assert selected_pods(stack, other) == [john__doe.pod_name]
    await john_doe.stop()
    await john__doe.stop()
    assert stack.services() == []


async def test_two_users_starting_at_once_cannot_both_take_the_production_name(stack: Stack) -> None:
    stack.spark.delay = 0.2  # both are building their pods while the other chooses
    spawners = [spawner_of(stack, "john_doe"), spawner_of(stack, "john__doe")]
    await asyncio.gather(*(s.start() for s in spawners))
    names = {service_of(stack, s)["metadata"]["name"] for s in spawners}
    assert len(names) == 2
    assert "jupyter-john-doe" in names
    for spawner in spawners:
        assert selected_pods(stack, service_of(stack, spawner)) == [spawner.pod_name]
        await spawner.stop()


async def test_a_restarted_hub_sees_the_name_a_running_pod_holds(stack: Stack) -> None:
    """A new hub process has no memory of the names it chose: the running pods' labels tell it."""
    john_doe = spawner_of(stack, "john_doe")
    await john_doe.start()
    spark_connect.release(NAMESPACE, john_doe.pod_name)  # what a new process knows of its claims: none
    john__doe = spawner_of(stack, "john__doe")
    await john__doe.start()
    assert service_of(stack, john__doe)["metadata"]["name"] != "jupyter-john-doe"
    assert selected_pods(stack, raw(stack, "v1/services", "jupyter-john-doe")) == [john_doe.pod_name]
    await john__doe.stop()
    await john_doe.stop()


async def test_a_sixty_character_name_gets_a_valid_service(stack: Stack) -> None:
    assert len(LONG_NAME) == 60
    assert not spark_connect.is_service_name(production_name(LONG_NAME))  # 68 characters
    spawner = spawner_of(stack, LONG_NAME)
    await spawner.start()
    service = service_of(stack, spawner)
    name = service["metadata"]["name"]
    assert spark_connect.is_service_name(name), name
    assert len(name) <= 63
    assert selected_pods(stack, service) == [spawner.pod_name]
    await spawner.stop()
    assert stack.services() == []


async def test_a_service_an_earlier_pod_left_is_replaced(stack: Stack) -> None:
    spawner = stack.spawner()
    await spawner.start()
    await super(BERDLSpawner, spawner).stop()  # the pod only, as if the hub died before the rest
    assert stack.services() == ["jupyter-alice"]
    await spawner.start()
    service = raw(stack, "v1/services", "jupyter-alice")
    assert (
        service["metadata"]["ownerReferences"][0]["uid"]
        == raw(stack, "v1/pods", "jupyter-alice")["metadata"]["uid"]
    )
    await spawner.stop()


async def test_a_restarted_hub_gives_a_running_server_the_service_it_lacks(stack: Stack) -> None:
    """The hub died after the pod was made, before its Service was (or someone deleted it): the first
    poll of the new hub makes it, with the name the pod holds, even when the saved state lacks it."""
    spawner = spawner_of(stack, "john_doe")
    await spawner.start()
    state = spawner.get_state()
    assert state["berdl_spark_connect_service"] == "jupyter-john-doe"
    del stack.k8s.objects[kmock.resource("v1/services"), NAMESPACE, "jupyter-john-doe"]
    del state["berdl_spark_connect_service"]  # saved before the name was chosen
    spark_connect.release(NAMESPACE, spawner.pod_name)
    again = stack.revived(spawner, state)
    assert await again.poll() is None
    service = raw(stack, "v1/services", "jupyter-john-doe")
    assert service["metadata"]["ownerReferences"][0]["name"] == spawner.pod_name
    assert selected_pods(stack, service) == [spawner.pod_name]
    await again.stop()
    assert stack.services() == []


async def test_a_pod_started_before_services_gets_none(stack: Stack) -> None:
    """Its notebook was given no SPARK_CONNECT_URL: a Service would name a server it never started."""
    spawner = stack.spawner()
    await spawner.start()
    # The pod as an earlier hub made it, without the label: changed through the API, so that KubeSpawner's
    # reflector sees it too.
    url = f"{stack.k8s_url}/api/v1/namespaces/{NAMESPACE}/pods/{spawner.pod_name}"
    patch = {"metadata": {"labels": {LABEL: None}}}
    async with aiohttp.ClientSession() as session, session.patch(url, json=patch) as response:
        assert response.status == 200
    for _ in range(200):
        if LABEL not in (upstream.reflected_pod(spawner) or {})["metadata"].get("labels", {}):
            break
        await asyncio.sleep(0.02)
    assert LABEL not in raw(stack, "v1/pods", spawner.pod_name)["metadata"]["labels"]
    del stack.k8s.objects[kmock.resource("v1/services"), NAMESPACE, "jupyter-alice"]
    state = spawner.get_state()
    del state["berdl_spark_connect_service"]
    spark_connect.release(NAMESPACE, spawner.pod_name)
    again = stack.revived(spawner, state)
    assert await again.poll() is None
    assert stack.services() == []
    await again.stop()


async def test_each_kind_is_named_from_what_a_restarted_hub_knows(stack: Stack) -> None:
    """The pod's name and the saved state name every object, so a hub that restarted deletes them all."""
    spawner = spawner_of(stack, "john__doe")
    await spawner.start()
    again = stack.revived(spawner)
    names = [owned.name(spawner.pod_name) for owned in spawner.owned_objects()]
    assert [owned.name(spawner.pod_name) for owned in again.owned_objects()] == names
    assert names == [
        f"{spawner.pod_name}-credentials",
        "jupyter-john-doe",
        f"{spawner.pod_name}-spark-notebook",
        f"{spawner.pod_name}-spark-cluster",
    ]
    await again.stop()
    assert (stack.secrets(), stack.services()) == ([], [])


async def test_a_name_from_an_earlier_start_never_deletes_another_users_service(stack: Stack) -> None:
    """john_doe held jupyter-john-doe and stopped; john__doe holds it now. john_doe's next start fails
    before its pod, and his saved state still says jupyter-john-doe: his tear-down leaves it alone."""
    john_doe = spawner_of(stack, "john_doe")
    await john_doe.start()
    await john_doe.stop()
    john__doe = spawner_of(stack, "john__doe")
    await john__doe.start()
    assert service_of(stack, john__doe)["metadata"]["name"] == "jupyter-john-doe"
    assert john_doe.get_state()["berdl_spark_connect_service"] == "jupyter-john-doe"
    stack.governance.credentials.pop(kbase_token("john_doe"))  # his next start fails before any pod
    with pytest.raises(SpawnRefused):
        await john_doe.start()
    await john_doe.run_post_stop_hook()
    assert selected_pods(stack, raw(stack, "v1/services", "jupyter-john-doe")) == [john__doe.pod_name]
    await john__doe.stop()


async def test_a_restarted_hub_never_deletes_a_name_a_lost_pod_held_and_another_server_holds_now(
    stack: Stack,
) -> None:
    """While the hub was down john_doe's pod was lost, and john__doe's start took the name: the restarted
    hub's clean-up of john_doe, from his saved state, leaves john__doe's Service."""
    john_doe = spawner_of(stack, "john_doe")
    await john_doe.start()
    state = john_doe.get_state()
    await john_doe.stop()  # (his pod gone; his record, saved earlier, still says running)
    john__doe = spawner_of(stack, "john__doe")
    await john__doe.start()
    again = stack.revived(john_doe, state)
    assert await again.poll() is not None  # the pod is gone: JupyterHub stops the server
    await again.stop()
    await again.run_post_stop_hook()
    assert selected_pods(stack, raw(stack, "v1/services", "jupyter-john-doe")) == [john__doe.pod_name]
    await john__doe.stop()


async def test_kubespawners_own_service_is_left_to_it(stack: Stack) -> None:
    """With services_enabled KubeSpawner makes a Service named as the pod, here alice's production name:
    hers takes another name, and KubeSpawner's stays as it made it."""
    spawner = stack.spawner(services_enabled=True)
    await spawner.start()
    kubespawners = raw(stack, "v1/services", spawner.pod_name)
    assert spawner.pod_name == "jupyter-alice"
    assert LABEL not in kubespawners["spec"]["selector"]  # KubeSpawner's own selector
    ours = service_of(stack, spawner)
    assert ours["metadata"]["name"] == fallback_name(spawner.pod_name)
    assert selected_pods(stack, ours) == [spawner.pod_name]
    await spawner.stop()


async def test_the_holder_of_a_name_is_the_one_held_names_gives() -> None:
    """`holder` answers for one name what `held_names` maps for all: this process's claim first, else the
    first pod of the namespace labelled with it."""

    def pod(name: str, label: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": namespace, "labels": {LABEL: label}}}

    pods = [pod("jupyter-x", "svc-a", "elsewhere"), pod("jupyter-a", "svc-a"), pod("jupyter-b", "svc-a")]
    pods += [pod("jupyter-c", "svc-c"), {"metadata": {"name": "jupyter-d"}}]
    spark_connect.claim(NAMESPACE, user="c", default_server=False, pod_name="jupyter-claimed", pods=[])
    claimed = spark_connect.fallback_name("jupyter-claimed")
    pods.append(pod("jupyter-e", claimed))
    try:
        held = spark_connect.held_names(NAMESPACE, pods)
        for name in ["svc-a", "svc-c", claimed, "svc-none"]:
            assert spark_connect.holder(NAMESPACE, name, pods) == held.get(name), name
        assert held[claimed] == "jupyter-claimed"
        assert held["svc-a"] == "jupyter-a"
    finally:
        spark_connect.release(NAMESPACE, "jupyter-claimed")
