"""Who reaches whom between users' notebooks and Spark clusters: the rendered deploy/ plus the
NetworkPolicies the spawner made for alice and bob, taken from the Kubernetes emulator after real starts,
decided by the project's NetworkPolicy evaluator (netpol.py). Spark runs without authentication: these
policies are the only wall between users' clusters."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

from localhub.standins.hub import kbase_token, make_spawner
from localhub.standins.kube import NAMESPACE, throwaway_kube_config
from tests.deploy.netpol import Peer, allowed, port_classes
from tests.deploy.rendered import DEPLOY, render
from tests.hub.hubtest_stack import running_stack

SPARK_NAMESPACE = "berdl-spark"
USERS = ("alice", "bob")


async def _spawned(spark_namespace: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The NetworkPolicies and the pods of alice's and bob's running servers, as the emulator holds them."""
    async with running_stack(make_spawner) as stack:
        for user in USERS:
            token = kbase_token(user)
            stack.spark.tokens.add(token)
            stack.governance.credentials[token] = {"username": user, "access_key": "a", "secret_key": "s"}
        spawners = [
            stack.spawner(user, token=kbase_token(user), spark_namespace=spark_namespace) for user in USERS
        ]
        for spawner in spawners:
            await spawner.start()
        held = {key: obj.raw for key, obj in stack.k8s.objects.items() if not obj.deleted}
        for spawner in spawners:
            await spawner.stop()
    policies = [
        o
        for (kind, _, _), o in held.items()
        if kind == kmock.resource("networking.k8s.io/v1/networkpolicies")
    ]
    pods = {o["metadata"]["name"]: o for (kind, _, _), o in held.items() if kind == kmock.resource("v1/pods")}
    return policies, pods


def _deployed(spark_namespace: str, tmp_path: Path) -> list[dict[str, Any]]:
    """deploy/ as rendered, and for a Spark namespace of its own, deploy/spark-namespace/ set to it."""
    objects = render()
    if spark_namespace == NAMESPACE:
        return objects
    folder = tmp_path / "spark-overlay"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": spark_namespace,
                "resources": [os.path.relpath(DEPLOY / "spark-namespace", folder)],
            }
        )
    )
    return objects + render(folder)


@pytest.fixture(scope="module", params=[NAMESPACE, SPARK_NAMESPACE], ids=["same namespace", "Spark's own"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    spark_namespace: str = request.param
    with throwaway_kube_config():  # KubeSpawner loads one when it is built; the stack names the emulator
        made, pods = asyncio.run(_spawned("" if spark_namespace == NAMESPACE else spark_namespace))
    deployed = _deployed(spark_namespace, tmp_path_factory.mktemp("spark"))
    policies = [o for o in deployed if o["kind"] == "NetworkPolicy"] + made

    def spark(user: str, component: str, ip: str) -> Peer:
        # The labels the Spark Cluster Manager's templates give (BERDataLakehouse/spark_cluster_manager,
        # src/templates): app, component, user (the KBase name as it is), cluster-id.
        labels = {"app": "spark", "component": component, "user": user, "cluster-id": f"spark-{user}-1"}
        return Peer(f"{user}'s spark {component}", ip, labels, spark_namespace)

    def notebook(user: str, ip: str) -> Peer:
        pod = pods[f"jupyter-{user}"]
        return Peer(f"{user}'s notebook", ip, pod["metadata"]["labels"], NAMESPACE, {"notebook-port": 8888})

    peers = {
        "alice": notebook("alice", "10.1.0.10"),
        "bob": notebook("bob", "10.1.0.12"),
        "alice-master": spark("alice", "master", "10.4.0.20"),
        "alice-worker": spark("alice", "worker", "10.4.0.21"),
        "bob-master": spark("bob", "master", "10.4.0.30"),
        "bob-worker": spark("bob", "worker", "10.4.0.31"),
        "hub": Peer(
            "hub",
            "10.1.0.2",
            {"app.kubernetes.io/name": "berdl-jupyterhub", "app.kubernetes.io/component": "hub"},
            NAMESPACE,
        ),
        "hub-db": Peer("hub-db", "10.1.0.30", {"app": "postgres"}, NAMESPACE, {"postgres": 5432}),
        "minio": Peer(
            "minio", "10.3.0.5", {"app": "minio", "berdl.kbase.us/notebook-access": "true"}, "minio"
        ),
        "metadata": Peer("cloud metadata", "169.254.169.254"),
        "api": Peer("the Kubernetes API service", "10.96.0.1"),
        "private": Peer("an unlisted private address", "172.16.5.5"),
        "db-outside": Peer("the hub's database outside the cluster", "10.20.0.5"),
        "public": Peer("a public address", "151.101.0.223"),
    }
    return {"policies": policies, "peers": peers}


def reaches(world: dict[str, Any], source: str, destination: str, port: int) -> bool:
    return allowed(world["policies"], world["peers"][source], world["peers"][destination], port)


# The ports Spark needs: the master's 7077, a driver's and its block manager's (random, as Spark picks
# them unless set), an executor's.
SPARK_PORTS = (7077, 41234, 45678, 38211)


@pytest.mark.parametrize("port", SPARK_PORTS)
def test_a_users_notebook_and_spark_pods_reach_each_other(world: dict[str, Any], port: int) -> None:
    for notebook, spark in (("alice", "alice-master"), ("alice", "alice-worker"), ("bob", "bob-worker")):
        assert reaches(world, notebook, spark, port), (notebook, spark)
        assert reaches(world, spark, notebook, port), (spark, notebook)
    assert reaches(world, "alice-master", "alice-worker", port)  # the cluster itself
    assert reaches(world, "alice-worker", "alice-master", port)


ACROSS_USERS = (
    ("bob", "alice-master"),  # bob submitting work to alice's cluster
    ("bob", "alice-worker"),
    ("alice-worker", "bob"),  # alice's executors at bob's server or driver
    ("alice-master", "bob"),
    ("alice-worker", "bob-worker"),  # cluster to cluster
    ("bob-master", "alice-worker"),
    ("alice", "bob"),
)


@pytest.mark.parametrize("port", [*SPARK_PORTS, 8888, 22])
def test_nothing_reaches_across_users(world: dict[str, Any], port: int) -> None:
    for source, destination in ACROSS_USERS:
        assert not reaches(world, source, destination, port), (source, destination, port)


def test_nothing_reaches_across_users_on_any_port(world: dict[str, Any]) -> None:
    """Every TCP port, through the ports that stand for them all (netpol.port_classes)."""
    for source, destination in ACROSS_USERS:
        ports = port_classes(world["policies"], world["peers"][destination])
        opened = [port for port in ports if reaches(world, source, destination, port)]
        assert opened == [], (source, destination, opened)


def test_spark_pods_reach_the_data_services_and_the_internet_and_nothing_private(
    world: dict[str, Any],
) -> None:
    for spark in ("alice-master", "alice-worker"):
        assert reaches(world, spark, "minio", 9000)
        assert reaches(world, spark, "public", 443)
        for closed, port in (
            ("metadata", 80),
            ("hub-db", 5432),
            ("db-outside", 5432),
            ("api", 443),
            ("private", 443),
            ("hub", 8081),
        ):
            assert not reaches(world, spark, closed, port), (spark, closed)
