"""Each server's NetworkPolicies to its user's Spark pods (berdl_hub.spark_network), through start() and
stop() of real BERDLSpawners on the Kubernetes emulator: made with the server, gone with it on every way
out, in the Spark pods' namespace when that is another. What they allow is tests/deploy's
test_spark_isolation.py."""

from __future__ import annotations

import asyncio
from typing import Any

import kmock
import pytest
from berdl_hub.spark_network import NOTEBOOK_USER_LABEL
from berdl_hub.spawner import BERDLSpawner, SpawnRefused

from localhub.standins.hub import FakeUser
from localhub.standins.kube import NAMESPACE
from tests.hub.hubtest_stack import TOKEN, Stack

pytestmark = pytest.mark.asyncio

SPARK_NAMESPACE = "berdl-spark"


def policies(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    """Every NetworkPolicy the emulator holds, by (namespace, name)."""
    kind = kmock.resource("networking.k8s.io/v1/networkpolicies")
    return {
        (key[1], key[2]): obj.raw
        for key, obj in stack.k8s.objects.items()
        if key[0] == kind and not obj.deleted
    }


def alices_two_servers(stack: Stack, spark_namespace: str) -> tuple[BERDLSpawner, BERDLSpawner]:
    """Spawners of alice's default server and of her server "big", her Spark pods in `spark_namespace`."""
    user = FakeUser(name="alice", auth_state={"kbase_token": TOKEN})
    default = stack.spawner(user=user, server="", spark_namespace=spark_namespace)
    return default, stack.spawner(user=user, server="big", spark_namespace=spark_namespace)


@pytest.mark.parametrize("spark_namespace", ["", SPARK_NAMESPACE], ids=["same namespace", "Spark's own"])
async def test_each_server_brings_its_policies_and_takes_them_when_it_stops(
    spark_namespace: str, stack: Stack
) -> None:
    first, second = alices_two_servers(stack, spark_namespace)
    await first.start()
    spark_ns = spark_namespace or NAMESPACE
    assert set(policies(stack)) == {
        (NAMESPACE, "jupyter-alice-spark-notebook"),
        (spark_ns, "jupyter-alice-spark-cluster"),
    }
    cluster_side = policies(stack)[spark_ns, "jupyter-alice-spark-cluster"]
    assert cluster_side["spec"]["podSelector"] == {"matchLabels": {"app": "spark", "user": "alice"}}
    notebook_side = policies(stack)[NAMESPACE, "jupyter-alice-spark-notebook"]
    assert notebook_side["spec"]["podSelector"]["matchLabels"][NOTEBOOK_USER_LABEL] == "alice"
    owner = "ownerReferences" in cluster_side["metadata"]
    assert owner is (spark_ns == NAMESPACE)  # no ownerReference reaches across namespaces: a label does

    await second.start()
    assert len(policies(stack)) == 4
    await first.stop()
    # The second server's own policies keep the way open for it.
    assert set(policies(stack)) == {
        (NAMESPACE, "jupyter-alice--big-spark-notebook"),
        (spark_ns, "jupyter-alice--big-spark-cluster"),
    }
    await second.stop()
    assert policies(stack) == {}


@pytest.mark.parametrize("spark_namespace", ["", SPARK_NAMESPACE], ids=["same namespace", "Spark's own"])
async def test_a_restarted_hub_gives_a_server_started_before_the_policies_its_own(
    spark_namespace: str, stack: Stack
) -> None:
    """The rollout (deploy/README.md): the narrowed static policy cuts the Spark traffic of servers that
    run, and the upgraded hub's first poll of each gives it the policies it lacks, in both namespaces."""
    (before_upgrade, _) = alices_two_servers(stack, spark_namespace)
    await before_upgrade.start()
    made = set(policies(stack))
    kind = kmock.resource("networking.k8s.io/v1/networkpolicies")
    for namespace, name in made:  # as a server started before the per-user policies has none
        del stack.k8s.objects[kind, namespace, name]
    assert policies(stack) == {}

    upgraded = stack.revived(before_upgrade, spark_namespace=spark_namespace)
    assert await upgraded.poll() is None
    assert set(policies(stack)) == made
    await upgraded.stop()
    assert policies(stack) == {}


async def test_a_failed_start_and_a_lost_pod_leave_no_policy(stack: Stack) -> None:
    async def failing_hook(spawner: Any, pod: dict[str, Any]) -> None:
        raise SpawnRefused("the operator's hook refused")

    failed = stack.spawner(after_pod_created_hook=failing_hook)
    with pytest.raises(SpawnRefused):
        await failed.start()
    assert policies(stack) == {}

    lost = stack.spawner(spark_namespace=SPARK_NAMESPACE)
    await lost.start()
    assert len(policies(stack)) == 2
    del stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, lost.pod_name]  # the node is gone
    await lost.run_post_stop_hook()
    assert policies(stack) == {}


class LaggingPods(dict[str, Any]):
    """KubeSpawner's pod reflector store, which shows the pod `late` only once released: a watch that
    lags behind the API server (the bench saw up to 1.3 s with 200 spawns at once)."""

    def __init__(self, pods: dict[str, Any], late: str) -> None:
        super().__init__(pods)
        self.late, self.held, self.released = f"{NAMESPACE}/{late}", dict[str, Any](), False

    def __setitem__(self, key: str, value: Any) -> None:
        if key == self.late and not self.released:
            self.held[key] = value
        else:
            super().__setitem__(key, value)

    def release(self) -> None:
        self.released = True
        self.update(self.held)


async def test_the_first_polls_sweep_keeps_the_policy_of_a_server_its_reflector_has_not_shown(
    stack: Stack,
) -> None:
    """The first poll of a hub's process deletes what lost pods left in the Spark pods' namespace; a
    server starting meanwhile, whose objects were made from its pod create's answer before the
    reflector shows the pod, is no lost pod."""
    first, second = alices_two_servers(stack, SPARK_NAMESPACE)
    await first.start()
    reflector = first.pod_reflector
    assert reflector is not None
    lagging = reflector.resources = LaggingPods(reflector.resources, second.pod_name)
    starting = asyncio.create_task(second.start())
    policy = (SPARK_NAMESPACE, f"{second.pod_name}-spark-cluster")
    while policy not in policies(stack):
        await asyncio.sleep(0.01)
    assert await first.poll() is None  # this process's first poll: its sweep
    lagging.release()
    await starting
    assert policy in policies(stack)
    await second.stop()
    await first.stop()
    assert policies(stack) == {}


async def test_without_spark_no_policy(stack: Stack) -> None:
    spawner = stack.spawner(spark_cluster_manager_url="")
    await spawner.start()
    assert policies(stack) == {}
    await spawner.stop()


async def test_a_name_no_spark_pod_can_carry_gets_no_policy(stack: Stack) -> None:
    """The Spark Cluster Manager labels its pods `user: <name>`: a name that is no label value (over 63
    characters) can have no Spark pod, so there is nothing to open (and a policy naming it would be
    refused by the API server, failing the start)."""
    name = "a" * 64
    stack.spark.tokens.add(f"kbase-token-{name}")
    stack.governance.credentials[f"kbase-token-{name}"] = {
        "username": name,
        "access_key": "a",
        "secret_key": "s",
    }
    spawner = stack.spawner(name, token=f"kbase-token-{name}")
    await spawner.start()
    assert policies(stack) == {}
    await spawner.stop()


async def test_a_profile_that_moves_the_spark_pods_gets_its_policy_where_they_are(stack: Stack) -> None:
    """A profile may set any of the spawner's settings (kubespawner_override), BERDL's own included: the
    server's objects are those of the settings its profile gave it, made and deleted there."""
    profile = {
        "display_name": "Spark elsewhere",
        "slug": "elsewhere",
        "default": True,
        "kubespawner_override": {"spark_namespace": SPARK_NAMESPACE},
    }
    spawner = stack.spawner(profile_list=[profile])
    await spawner.start()
    assert set(policies(stack)) == {
        (NAMESPACE, "jupyter-alice-spark-notebook"),
        (SPARK_NAMESPACE, "jupyter-alice-spark-cluster"),
    }
    await spawner.stop()
    assert policies(stack) == {}
