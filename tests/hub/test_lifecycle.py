# A new cluster test goes here when it is about one server's start or stop and what failing or slow services,
# or a lost pod, do to it; about the credentials Secret, the share of the cluster a user's servers hold (also
# across a hub restart) or the profile that sizes the cluster, it goes in test_secret_and_cluster.py.
"""start() and stop() of a real BERDLSpawner (a real KubeSpawner underneath) against HTTP servers on
127.0.0.1: the kmock Kubernetes API emulator, a Spark Cluster Manager and a governance API that follow
their specs. Every test also scans all captured logs for the tokens and keys it used."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import kmock
import pytest
from berdl_hub import upstream
from berdl_hub.spawner import SpawnRefused

from localhub.standins.hub import hub_stop
from localhub.standins.kube import NAMESPACE
from tests.hub.hubtest_stack import ACCESS_KEY, API_TOKEN, SECRET_KEY, SECRETS, TOKEN, Stack, pod_env
from tests.hub.hubtest_support import assert_no_secret_in, closed_port_url

pytestmark = pytest.mark.asyncio


async def test_spawn_gets_spark_and_minio_then_stop_deletes_the_cluster(
    stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = stack.spawner()
    url = await spawner.start()
    assert url == "http://127.0.0.1:8888"

    env = pod_env(stack, spawner)
    assert env["SPARK_MASTER_URL"].startswith("spark://spark-master-cluster-")
    assert env["SPARK_DRIVER_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # The credentials come from the server's Secret, which the node found before starting the notebook.
    assert stack.kubelet.resolved[spawner.pod_name] == {
        "MINIO_ACCESS_KEY": ACCESS_KEY,
        "MINIO_SECRET_KEY": SECRET_KEY,
        "KBASE_AUTH_TOKEN": TOKEN,
        "JUPYTERHUB_API_TOKEN": API_TOKEN,
        "JPY_API_TOKEN": API_TOKEN,
    }
    assert stack.spark.bodies == [spawner.spark_cluster_config]
    assert len(stack.spark.clusters) == 1

    await spawner.stop()
    assert stack.spark.clusters == {}
    assert stack.spark.deleted == 1
    assert spawner.pod_name not in stack.pods()
    assert_no_secret_in(all_logs.text, SECRETS)


async def test_admin_gets_the_admin_cluster_size(stack: Stack) -> None:
    spawner = stack.spawner(admin_spark_cluster_config={"worker_count": 8})
    spawner.user.admin = True
    await spawner.start()
    assert stack.spark.bodies[0]["worker_count"] == 8
    await spawner.stop()


SPARK_FAILURES = ["500", "401", "timeout", "refused"]


def break_spark(stack: Stack, failure: str) -> dict[str, Any]:
    """Make the Spark API fail one way; returns the spawner settings that go with it."""
    if failure == "refused":
        return {"spark_cluster_manager_url": closed_port_url()}
    stack.spark.mode = failure
    return {}


@pytest.mark.parametrize("failure", SPARK_FAILURES)
async def test_spark_failure_fails_the_spawn_with_a_readable_message_and_no_orphan(
    failure: str, stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = stack.spawner(spark_failure_policy="fail", **break_spark(stack, failure))
    with pytest.raises(SpawnRefused) as raised:
        await spawner.start()
    message = raised.value.jupyterhub_message
    assert message.startswith("Your Spark cluster could not be created: Spark Cluster Manager")
    expected = {
        "500": "answered 500 (ClusterCreationError: Failed to create the Spark master service)",
        "401": "answered 401 (AuthenticationError: Invalid or expired token)",
        "timeout": "no answer within 2 s",
        "refused": "cannot be reached",
    }[failure]
    assert expected in message
    assert stack.pods() == []  # the pod was never created
    assert stack.spark.clusters == {}  # what a 500 or a late answer built was deleted
    assert_no_secret_in(all_logs.text, SECRETS)


@pytest.mark.parametrize("failure", SPARK_FAILURES)
async def test_spark_failure_under_continue_starts_without_spark(
    failure: str, stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = stack.spawner(spark_failure_policy="continue", **break_spark(stack, failure))
    await spawner.start()
    env = pod_env(stack, spawner)
    assert "SPARK_MASTER_URL" not in env
    assert stack.kubelet.resolved[spawner.pod_name]["MINIO_SECRET_KEY"] == SECRET_KEY
    assert stack.spark.clusters == {}
    assert "Starting alice without a Spark cluster: Spark Cluster Manager" in all_logs.text
    await spawner.stop()
    assert spawner.pod_name not in stack.pods()
    assert_no_secret_in(all_logs.text, SECRETS)


@pytest.mark.parametrize(
    ("resource", "error"),
    [
        ("pods", "(?s)Forbidden.*exceeded quota"),  # the API server's own message, as the client raises it
        ("secrets", "creating Secret berdl/jupyter-alice-credentials: Kubernetes answered 403"),
    ],
)
async def test_pod_or_secret_creation_failing_after_the_cluster_exists_deletes_the_cluster(
    resource: str, error: str, stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    stack.k8s[f"post /api/v1/namespaces/berdl/{resource}"] << kmock.KubernetesError(
        status=403, reason="Forbidden", message=f'{resource} "jupyter-alice" is forbidden: exceeded quota'
    )
    spawner = stack.spawner()
    with pytest.raises(Exception, match=error):
        await spawner.start()
    if resource == "secrets":  # (kmock keeps the object of a POST it was told to refuse)
        assert stack.pods() == []  # the pod whose Secret failed was deleted
        assert stack.secrets() == []
    assert stack.spark.created == 1
    assert stack.spark.clusters == {}
    assert stack.spark.deleted == 1
    # What the hub does next after a failed spawn (user.stop): nothing is left to delete, nothing fails.
    await spawner.run_post_stop_hook()
    assert stack.spark.calls.count(("DELETE", "/clusters")) == 1
    assert_no_secret_in(all_logs.text, SECRETS)


async def test_a_pod_of_the_same_name_still_there_is_replaced(stack: Stack) -> None:
    """KubeSpawner's rule for a pod it finds in the way (a 409 to its create): stop it, create anew."""
    first = stack.spawner()
    await first.start()
    left = stack.k8s.objects[kmock.resource("v1/pods"), "berdl", first.pod_name]["metadata"]["uid"]
    spawner = stack.spawner()  # a hub that lost track of the first pod
    await spawner.start()
    assert stack.pods() == [spawner.pod_name]
    now = stack.k8s.objects[kmock.resource("v1/pods"), "berdl", spawner.pod_name]["metadata"]["uid"]
    assert now != left
    await spawner.stop()
    assert stack.pods() == []


async def test_a_pod_create_whose_answer_stalls_is_tried_again_after_its_request_timeout() -> None:
    """KubeSpawner bounds the create and the reading of its answer by k8s_api_request_timeout, then
    tries again: an answer whose body never ends must not hold the start past it."""
    released: list[bool] = []

    class StalledAnswer:
        status = 201

        async def json(self) -> Any:
            await asyncio.sleep(3600)

        def release(self) -> None:
            released.append(True)

    async def create_namespaced_pod(namespace: str, pod: Any, _preload_content: bool) -> StalledAnswer:
        return StalledAnswer()

    spawner = SimpleNamespace(
        log=logging.getLogger("test"),
        namespace=NAMESPACE,
        api=SimpleNamespace(create_namespaced_pod=create_namespaced_pod),
    )
    pod = SimpleNamespace(metadata=SimpleNamespace(name="jupyter-alice"))
    assert await asyncio.wait_for(upstream.create_pod(spawner, pod, 0.2), 5) is None
    assert released == [True]


@pytest.mark.parametrize(
    ("code", "meaning"), [(2, "settings are invalid"), (3, "home folder cannot be used")]
)
async def test_a_failing_berdl_init_ends_the_spawn_at_once_and_deletes_the_cluster(
    code: int, meaning: str, stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    stack.kubelet.init_exit_code = code
    # Waiting out start_timeout would end in a TimeoutError, not in berdl-init's own reason.
    spawner = stack.spawner(start_timeout=60)
    with pytest.raises(SpawnRefused) as raised:
        await spawner.start()
    assert f"berdl-init exited with status {code}" in raised.value.jupyterhub_message
    assert meaning in raised.value.jupyterhub_message
    assert stack.spark.clusters == {}
    assert stack.secrets() == []  # the pod's Secret had been created; the failed spawn deleted it
    await spawner.stop()  # what the hub does next: the pod goes too
    assert stack.pods() == []
    assert_no_secret_in(all_logs.text, SECRETS)


async def test_stop_when_the_cluster_is_already_gone(
    stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = stack.spawner()
    await spawner.start()
    stack.spark.clusters.clear()  # deleted behind the hub's back
    await spawner.stop()
    assert ("DELETE", "/clusters") in stack.spark.calls
    assert (
        "Deleted the Spark cluster of alice (the server stopped): No Spark cluster to delete" in all_logs.text
    )
    assert "Could not delete" not in all_logs.text


async def test_lost_pod_teardown_runs_from_the_post_stop_hook_also_after_a_hub_restart(
    stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = stack.spawner()
    await spawner.start()
    state = spawner.get_state()
    # The hub restarts: a new spawner object gets the stored state; the pod is lost meanwhile.
    async with stack.k8s.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{spawner.pod_name}") as deleted:
        assert deleted.status == 200
    revived = stack.spawner()
    revived.load_state(state)
    for _ in range(100):
        if await revived.poll() is not None:
            break
        await asyncio.sleep(0.05)
    assert await revived.poll() is not None
    # JupyterHub's user.stop() skips spawner.stop() for a server that is gone, but always runs this:
    await revived.run_post_stop_hook()
    assert stack.spark.clusters == {}
    assert stack.spark.deleted == 1
    assert stack.secrets() == []  # kmock collects no garbage: the spawner deleted the lost pod's Secret
    assert_no_secret_in(all_logs.text, SECRETS)


async def test_spark_delete_is_retried_and_never_raises(
    stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = stack.spawner(service_request_attempts=2)
    await spawner.start()
    spawner.spark_cluster_manager_url = closed_port_url()
    saved = await hub_stop(spawner)  # completes although the Spark API is unreachable
    assert "attempt 1 of 2; retrying" in all_logs.text
    assert "Could not delete the Spark cluster of alice" in all_logs.text
    # The duty to delete is kept in the state the hub's database holds after the stop (cleared, then saved).
    assert saved["berdl_spark"] == {"delete_pending": True}


async def test_missing_credentials_fail_the_spawn_before_any_cluster(stack: Stack) -> None:
    stack.governance.mode = "500"
    spawner = stack.spawner(service_request_attempts=2)
    with pytest.raises(SpawnRefused, match="MinIO"):
        await spawner.start()
    assert stack.governance.calls == 2  # GET is idempotent: retried
    assert stack.spark.created == 0
    assert stack.pods() == []


async def test_a_user_without_a_token_is_told_so(stack: Stack) -> None:
    spawner = stack.spawner(token="", governance_api_url="")
    with pytest.raises(SpawnRefused, match="no KBase token"):
        await spawner.start()
    assert stack.spark.calls == []


async def test_fifty_spawns_at_once_do_not_wait_for_each_other(
    stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    """Each Spark answer takes 1 s; run one after the other, 50 spawns would take 50 s or more."""
    stack.spark.delay = 1.0
    stack.k8s.history = "none"  # nothing here asserts on past requests; kept, each makes the next slower
    tokens = [f"kbase-token-user{i:02d}-0123456789" for i in range(50)]
    stack.spark.tokens.update(tokens)
    stack.governance.credentials.update(
        {t: {"username": t, "access_key": f"ak-{t}", "secret_key": f"sk-{t}"} for t in tokens}
    )
    # Generous bounds for the Kubernetes steps: 50 starts at once share this process with the emulator
    # and the kubelet stand-in, and on a busy machine some pods took longer than the stack's default 20 s
    # to be reported running. What this test measures is the Spark step's overlap, not that.
    bounds = {"spark_create_timeout": 30, "start_timeout": 120, "k8s_api_request_retry_timeout": 60}
    spawners = [stack.spawner(f"user{i:02d}", token=t, **bounds) for i, t in enumerate(tokens)]

    urls = await asyncio.gather(*(s.start() for s in spawners))

    assert len(urls) == 50
    assert len(stack.spark.clusters) == 50
    # The slow POSTs overlapped instead of queueing (how long it took is bench/'s to measure).
    assert stack.spark.max_in_flight >= 40
    # The stops are not what this measures: 50 at once, each deleting four objects and a cluster, kept
    # the loop busy past the Spark client's 2 s deadline on a loaded machine when every answer took 1 s.
    stack.spark.delay = 0.0
    await asyncio.gather(*(s.stop() for s in spawners))
    assert stack.spark.clusters == {}
    assert_no_secret_in(all_logs.text, tokens)


async def test_the_pod_is_built_while_the_cluster_is_created_and_made_once_it_is_known(stack: Stack) -> None:
    """The hub's own work on the pod (here: KubeSpawner resolving a callable `uid`, which happens while
    the manifest is built) overlaps the Spark Cluster Manager's answer; the pod is created after it,
    with the cluster's SPARK_MASTER_URL."""
    stack.spark.delay = 0.5
    spark_busy_while_building: list[int] = []

    def uid(spawner: Any) -> int:
        spark_busy_while_building.append(stack.spark.in_flight)
        return 1000

    spawner = stack.spawner(uid=uid)
    await spawner.start()
    assert spark_busy_while_building
    assert set(spark_busy_while_building) == {1}
    cluster = next(iter(stack.spark.clusters.values()))
    assert pod_env(stack, spawner)["SPARK_MASTER_URL"] == f"spark://spark-master-{cluster}:7077"
    await spawner.stop()
    assert stack.spark.clusters == {}


async def test_a_pod_build_that_fails_during_the_cluster_create_deletes_the_cluster(stack: Stack) -> None:
    """The start fails before the cluster answered: it waits for the answer, then deletes the cluster."""
    stack.spark.delay = 0.5

    def uid(spawner: Any) -> int:
        raise RuntimeError("no uid for this user")

    spawner = stack.spawner(uid=uid)
    with pytest.raises(RuntimeError, match="no uid"):
        await spawner.start()
    assert stack.spark.created == 1
    assert stack.spark.clusters == {}
    assert stack.pods() == []
    assert spawner.get_state().get("berdl_spark") is None


async def test_a_refused_create_keeps_the_duty_an_earlier_failed_delete_left(stack: Stack) -> None:
    """A stop whose DELETE failed leaves the duty to delete in the state; a later start whose create the
    manager refuses (it built nothing) must not drop that duty."""
    spawner = stack.spawner(spark_failure_policy="continue")
    spawner.load_state({"berdl_spark": {"delete_pending": True}})
    stack.spark.mode = "401"
    await spawner.start()
    assert spawner.get_state()["berdl_spark"] == {"delete_pending": True}
    await spawner.stop()


# Spawner states as a hub's database holds them from before the spawner's restructuring (read with
# 2e5f701's get_state()): a hub of this version must honour them.
SAVED_BY_2E5F701 = {
    "holding": {
        "kubespawner_version": "7.1.0",
        "pod_name": "jupyter-alice",
        "namespace": "berdl",
        "dns_name": "jupyter-alice.berdl.svc.cluster.local",
        "berdl_spark": {
            "holds": True,
            "master_url": "spark://spark-master-cluster-alice:7077",
            "config": {"worker_count": 2},
        },
    },
    "owing": {
        "kubespawner_version": "7.1.0",
        "pod_name": "jupyter-alice",
        "namespace": "berdl",
        "dns_name": "jupyter-alice.berdl.svc.cluster.local",
        "berdl_spark": {"delete_pending": True},
    },
}


@pytest.mark.parametrize("saved", sorted(SAVED_BY_2E5F701))
async def test_a_state_saved_by_the_previous_version_is_honoured(saved: str, stack: Stack) -> None:
    before = stack.spawner()
    await before.start()  # the user's cluster, and a running server
    assert len(stack.spark.clusters) == 1

    after = stack.spawner()  # the upgraded hub's spawner of the same server
    after.load_state(SAVED_BY_2E5F701[saved])
    assert after.pod_name == "jupyter-alice"
    assert after.get_state()["berdl_spark"] == SAVED_BY_2E5F701[saved]["berdl_spark"]
    await after.stop()
    assert stack.spark.clusters == {}  # the share (or the duty to delete) was honoured
    assert stack.pods() == []
    assert stack.secrets() == []
