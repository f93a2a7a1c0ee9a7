# A new cluster test goes here when it is about the credentials Secret, the share of the cluster a user's
# servers hold (also across a hub restart) or the profile that sizes the cluster; about one server's start or
# stop and what failing or slow services, or a lost pod, do to it, it goes in test_lifecycle.py.
"""A server's credentials Secret and its user's one Spark cluster, through start() and stop() of real
BERDLSpawners against the kmock Kubernetes emulator (with a kubelet stand-in that starts a notebook only
once its Secret exists) and the fake Spark Cluster Manager and governance API.

kmock does no garbage collection: a Secret that is gone here was deleted by the spawner itself."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import kmock
import pytest
from berdl_hub import credentials
from berdl_hub.spawner import BERDLSpawner, SpawnRefused

from localhub.standins.hub import FakeUser
from localhub.standins.kube import NAMESPACE
from tests.hub.hubtest_stack import SECRETS, TOKEN, Stack, pod_env
from tests.hub.hubtest_support import assert_no_secret_in

pytestmark = pytest.mark.asyncio

SMALL = {
    "worker_count": 2,
    "worker_cores": 1,
    "worker_memory": "10GiB",
    "master_cores": 1,
    "master_memory": "8GiB",
}
LARGE = {"worker_count": 8, "worker_cores": 4, "worker_memory": "32GiB"}
PROFILES = [
    {
        "display_name": "Medium",
        "slug": "medium",
        "default": True,
        "kubespawner_override": {"mem_limit": "16G"},
    },
    {
        "display_name": "Large",
        "slug": "large",
        "kubespawner_override": {"mem_limit": "64G", "cpu_limit": 16.0, "spark_cluster_config": LARGE},
    },
    {
        "display_name": "Too large",
        "slug": "huge",
        "kubespawner_override": {"spark_cluster_config": {"worker_count": 50}},
    },
]


def raw(stack: Stack, resource: str, name: str) -> dict[str, Any]:
    return stack.k8s.objects[kmock.resource(resource), NAMESPACE, name].raw


def alice() -> FakeUser:
    return FakeUser(name="alice", auth_state={"kbase_token": TOKEN})


async def two_running_servers(stack: Stack) -> tuple[BERDLSpawner, BERDLSpawner]:
    """alice's default server, then her server "analysis", both started."""
    user = alice()
    first = stack.spawner(user=user, server="")
    second = stack.spawner(user=user, server="analysis")
    await first.start()
    await second.start()
    return first, second


async def test_the_secret_is_there_before_the_notebook_owned_by_the_pod_and_gone_after_stop(
    stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = stack.spawner()
    await spawner.start()
    name = credentials.secret_name(spawner.pod_name)
    assert name == "jupyter-alice-credentials"
    pod = raw(stack, "v1/pods", spawner.pod_name)
    secret = raw(stack, "v1/secrets", name)
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": spawner.pod_name,
            "uid": pod["metadata"]["uid"],
            "controller": False,
        }
    ]
    assert set(secret["data"]) == set(credentials.CREDENTIAL_KEYS)
    # The node started the notebook (it waits for the Secret) with the values from it.
    assert spawner.pod_name in stack.kubelet.started
    assert stack.kubelet.resolved[spawner.pod_name]["KBASE_AUTH_TOKEN"] == TOKEN
    # No credential value in the pod object.
    text = str(pod)
    assert [s[:6] for s in SECRETS if s in text] == []

    await spawner.stop()
    assert stack.secrets() == []
    assert_no_secret_in(all_logs.text, SECRETS)


async def test_a_secret_left_by_an_earlier_pod_is_replaced(stack: Stack) -> None:
    spawner = stack.spawner()
    await spawner.start()
    old_uid = raw(stack, "v1/secrets", "jupyter-alice-credentials")["metadata"]["ownerReferences"][0]["uid"]
    await super(BERDLSpawner, spawner).stop()  # the pod only, as if the hub died before deleting the Secret
    assert stack.secrets() == ["jupyter-alice-credentials"]
    await spawner.start()
    secret = raw(stack, "v1/secrets", "jupyter-alice-credentials")
    assert (
        secret["metadata"]["ownerReferences"][0]["uid"]
        == raw(stack, "v1/pods", spawner.pod_name)["metadata"]["uid"]
    )
    assert secret["metadata"]["ownerReferences"][0]["uid"] != old_uid
    await spawner.stop()


# --- one cluster per user ------------------------------------------------------------------------------


async def test_two_named_servers_share_one_cluster_and_the_last_stop_deletes_it(stack: Stack) -> None:
    first, second = await two_running_servers(stack)
    assert stack.spark.calls.count(("POST", "/clusters")) == 1
    assert pod_env(stack, first)["SPARK_MASTER_URL"] == pod_env(stack, second)["SPARK_MASTER_URL"]

    await first.stop()
    assert len(stack.spark.clusters) == 1  # the second server still uses it
    assert ("DELETE", "/clusters") not in stack.spark.calls
    await second.stop()
    assert stack.spark.clusters == {}
    assert stack.spark.calls.count(("DELETE", "/clusters")) == 1
    assert stack.secrets() == []


async def test_servers_starting_and_stopping_at_once_share_one_cluster(stack: Stack) -> None:
    user = alice()
    stack.spark.delay = 0.2  # the first POST is still on its way when the others ask
    spawners = [stack.spawner(user=user, server=name) for name in ("", "a", "b")]
    await asyncio.gather(*(s.start() for s in spawners))
    assert stack.spark.calls.count(("POST", "/clusters")) == 1
    assert len({pod_env(stack, s)["SPARK_MASTER_URL"] for s in spawners}) == 1
    await asyncio.gather(*(s.stop() for s in spawners))
    assert stack.spark.clusters == {}
    assert stack.spark.calls.count(("DELETE", "/clusters")) == 1


async def test_the_last_stop_deletes_the_cluster_also_after_a_hub_restart(stack: Stack) -> None:
    first, second = await two_running_servers(stack)
    states = {"": first.get_state(), "analysis": second.get_state()}
    assert all(TOKEN not in str(state) for state in states.values())

    # The hub restarts: a new user object, a new spawner per running server, each given its state.
    revived_user = alice()
    revived = {}
    for name, state in states.items():
        revived[name] = stack.spawner(user=revived_user, server=name)
        revived[name].load_state(state)
    await revived["analysis"].stop()
    assert len(stack.spark.clusters) == 1  # the default server still runs
    await revived[""].stop()
    assert stack.spark.clusters == {}

    # A new server after that makes a new cluster.
    await revived["analysis"].start()
    assert stack.spark.calls.count(("POST", "/clusters")) == 2
    await revived["analysis"].stop()
    assert stack.spark.clusters == {}


async def test_a_hub_that_dies_during_a_spawn_has_saved_the_cluster_it_made(stack: Stack) -> None:
    """JupyterHub writes a spawner's state to its database only once start() returns."""
    committed: list[dict[str, Any]] = []

    class Database:  # the hub's session: what is committed is what a restarted hub reads back
        def commit(self) -> None:
            committed.append(
                {
                    "state": dict(spawner.orm_spawner.state),
                    "pods": stack.pods(),
                    "clusters": dict(stack.spark.clusters),
                }
            )

    spawner = stack.spawner(db=Database())
    await spawner.start()
    # Committed before POST /clusters: a hub killed while it is in flight leaves the duty to delete.
    (before_post, after_post, *_) = committed
    assert before_post["clusters"] == {}
    assert before_post["state"]["berdl_spark"] == {"delete_pending": True}
    # Committed before the pod existed: a hub killed from then on still finds the share in its database.
    assert after_post["pods"] == []
    assert after_post["state"]["berdl_spark"]["holds"] is True

    # The manager built the cluster; a hub killed before the second commit knows only the first.
    assert stack.spark.clusters != {}
    revived = stack.spawner(user=alice(), server="")
    revived.load_state(before_post["state"])
    await revived.stop()
    assert stack.spark.clusters == {}


# --- profiles choose the cluster -----------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "body"), [(None, SMALL), ("medium", SMALL), ("large", SMALL | LARGE)])
async def test_the_chosen_profile_decides_the_cluster_body(
    profile: str | None, body: dict[str, Any], stack: Stack
) -> None:
    spawner = stack.spawner(profile_list=PROFILES)
    spawner.user_options = {"profile": profile} if profile else {}
    await spawner.start()
    assert stack.spark.bodies == [body]
    limits = raw(stack, "v1/pods", spawner.pod_name)["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == (64 if profile == "large" else 16) * 2**30
    await spawner.stop()


async def test_a_cluster_beyond_the_managers_limits_is_refused_with_its_reason(stack: Stack) -> None:
    spawner = stack.spawner(profile_list=PROFILES)
    spawner.user_options = {"profile": "huge"}
    with pytest.raises(SpawnRefused) as raised:
        await spawner.start()
    assert "answered 400 (ValidationError: worker_count beyond the allowed range)" in (
        raised.value.jupyterhub_message
    )
    assert stack.pods() == []


async def test_a_second_server_with_another_profile_is_told_it_shares_the_cluster(stack: Stack) -> None:
    user = alice()
    first = stack.spawner(user=user, server="", profile_list=PROFILES)
    first.user_options = {"profile": "medium"}
    second = stack.spawner(user=user, server="big", profile_list=PROFILES)
    second.user_options = {"profile": "large"}
    same = stack.spawner(user=user, server="same", profile_list=PROFILES)
    same.user_options = {"profile": "medium"}
    await first.start()
    await second.start()
    await same.start()
    assert stack.spark.bodies == [SMALL]
    told = [event["message"] async for event in second.progress()]
    assert any("shares the Spark cluster of your other running server" in m for m in told), told
    told_same = [event["message"] async for event in same.progress()]
    assert not any("Spark" in m for m in told_same), told_same
    for spawner in (first, second, same):
        await spawner.stop()
    assert stack.spark.clusters == {}


async def test_a_pod_of_the_same_name_is_replaced_without_losing_the_cluster(stack: Stack) -> None:
    """KubeSpawner answers a 409 by stopping the old pod itself: that stop must not end the new start's
    cluster, nor leave the new pod without its Secret."""
    old = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "jupyter-alice"},
        "spec": {"containers": []},
    }
    pods_url = f"{stack.k8s_url}/api/v1/namespaces/{NAMESPACE}/pods"
    async with aiohttp.ClientSession() as session, session.post(pods_url, json=old) as response:
        assert response.status in (200, 201)
        old_uid = (await response.json())["metadata"]["uid"]
    spawner = stack.spawner()
    await spawner.start()
    pod = raw(stack, "v1/pods", spawner.pod_name)
    assert pod["metadata"]["uid"] != old_uid
    assert len(stack.spark.clusters) == 1
    assert ("DELETE", "/clusters") not in stack.spark.calls
    assert stack.kubelet.resolved[spawner.pod_name]["KBASE_AUTH_TOKEN"] == TOKEN
    await spawner.stop()
    assert stack.spark.clusters == {}


async def test_an_operators_after_pod_created_hook_runs_after_the_secret_is_made(stack: Stack) -> None:
    seen: list[list[str]] = []

    async def hook(spawner: BERDLSpawner, pod: dict[str, Any]) -> None:
        seen.append(stack.secrets())

    spawner = stack.spawner(after_pod_created_hook=hook)
    await spawner.start()
    assert seen == [["jupyter-alice-credentials"]]
    await spawner.stop()


async def test_a_busy_api_server_is_asked_again_for_the_secret(stack: Stack) -> None:
    stack.k8s["post /api/v1/namespaces/berdl/secrets"][:1] << kmock.KubernetesError(
        status=503, reason="Service Unavailable", message="etcdserver: request timed out"
    )
    spawner = stack.spawner()
    await spawner.start()
    assert stack.secrets() == ["jupyter-alice-credentials"]
    assert stack.kubelet.resolved[spawner.pod_name]["KBASE_AUTH_TOKEN"] == TOKEN
    await spawner.stop()


async def test_a_stop_and_its_post_stop_hook_delete_the_secret_once(stack: Stack) -> None:
    """JupyterHub runs the post-stop hook after every stop; the Secret the stop deleted is not asked for
    again (one call fewer per stop for the API server), and the next start's Secret is deleted again."""
    deletes = stack.k8s[f"delete /api/v1/namespaces/{NAMESPACE}/secrets/jupyter-alice-credentials"]
    spawner = stack.spawner()
    for starts in (1, 2):
        await spawner.start()
        assert stack.secrets() == ["jupyter-alice-credentials"]
        await spawner.stop()
        await spawner.run_post_stop_hook()
        assert stack.secrets() == []
        assert len(deletes) == starts


async def test_a_start_that_fails_while_its_join_waits_for_a_sibling_owes_nothing_once_settled(
    stack: Stack,
) -> None:
    """alice's server "big" fails (its pod cannot be built) while its join still waits for the user's lock,
    which her default server holds during its cluster's create. The failed start waits for that join to
    end before it leaves the cluster: otherwise the join would take its share after the leave, hold the
    cluster for a server that is gone, and the default server's stop would never delete it."""
    user = alice()
    stack.spark.delay = 0.5  # the default server's create holds the user's lock this long

    def uid(spawner: Any) -> int:
        raise RuntimeError("no uid for this server")

    default = stack.spawner(user=user, server="")
    big = stack.spawner(user=user, server="big", uid=uid)
    starting = asyncio.ensure_future(default.start())
    while ("POST", "/clusters") not in stack.spark.calls:  # the default server's join holds the lock
        await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="no uid"):
        await big.start()
    await starting
    assert big.get_state().get("berdl_spark") is None  # left, owing nothing: its sibling holds the cluster
    await default.stop()
    assert stack.spark.clusters == {}
    assert stack.spark.calls.count(("POST", "/clusters")) == 1
