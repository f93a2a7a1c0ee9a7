"""The servers a lifecycle test runs against, on 127.0.0.1: the kmock Kubernetes API emulator with a
kubelet stand-in, a Spark Cluster Manager and a governance API that follow their specs
(`stack` in conftest.py makes one per test)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import kmock
from berdl_hub.spawner import BERDLSpawner

from localhub.standins.governance import GovernanceApp
from localhub.standins.http import serve
from localhub.standins.hub import FakeUser, reset_kubespawner
from localhub.standins.kube import NAMESPACE, ApiServer, Kubelet
from localhub.standins.spark import SparkClusterManagerApp
from tests.pods import env_of

TOKEN = "kbase-token-alice-0123456789"
API_TOKEN = "hub-api-token-for-alice-0123456789"
ACCESS_KEY = "minio-access-alice-0123"
SECRET_KEY = "minio-secret-alice-0123456789abcdef"
SECRETS = [TOKEN, API_TOKEN, ACCESS_KEY, SECRET_KEY]


@dataclass
class Stack:
    """The servers of one test and a way to make spawners that use them."""

    k8s: Any
    k8s_url: str
    spark: SparkClusterManagerApp
    spark_url: str
    governance: GovernanceApp
    governance_url: str
    make: Callable[..., BERDLSpawner]
    kubelet: Kubelet

    def spawner(self, name: str = "alice", token: str = TOKEN, **traits: Any) -> BERDLSpawner:
        settings: dict[str, Any] = {
            "k8s_api_host": self.k8s_url,
            "spark_cluster_manager_url": self.spark_url,
            "governance_api_url": self.governance_url,
            "start_timeout": 20,
            "k8s_api_request_retry_timeout": 10,
            "spark_create_timeout": 2.0,
            "spark_request_timeout": 2.0,
            "governance_request_timeout": 2.0,
            "events_enabled": False,
        }
        settings.update(traits)
        return self.make(name, token=token, api_token=API_TOKEN, **settings)

    def revived(
        self, spawner: BERDLSpawner, state: dict[str, Any] | None = None, **traits: Any
    ) -> BERDLSpawner:
        """The same server as a restarted hub sees it: a new user object (the same auth state) and
        spawner, given the saved state (`state`, else the spawner's own). JupyterHub gives a spawner its
        API token only when it starts the server."""
        user = FakeUser(name=spawner.user.name, auth_state=dict(spawner.user.auth_state or {}))
        again = self.spawner(spawner.user.name, user=user, server=spawner.name, **traits)
        again.api_token = ""
        again.load_state(spawner.get_state() if state is None else state)
        return again

    def pods(self) -> list[str]:
        return self.names("v1/pods")

    def secrets(self) -> list[str]:
        return self.names("v1/secrets")

    def services(self) -> list[str]:
        return self.names("v1/services")

    def names(self, resource: str) -> list[str]:
        kind = kmock.resource(resource)
        return [key[2] for key, obj in self.k8s.objects.items() if key[0] == kind and not obj.deleted]


@contextlib.asynccontextmanager
async def running_stack(make_spawner: Callable[..., BERDLSpawner]) -> AsyncIterator[Stack]:
    """Start the servers; yields the Stack, stops them after."""
    spark = SparkClusterManagerApp(tokens={TOKEN})
    governance = GovernanceApp(
        credentials={TOKEN: {"username": "alice", "access_key": ACCESS_KEY, "secret_key": SECRET_KEY}}
    )
    async with (
        ApiServer() as k8s,
        kmock.Server(k8s) as k8s_server,
        serve(spark.app()) as spark_url,
        serve(governance.app()) as governance_url,
    ):
        k8s_url = str(k8s_server.url).rstrip("/")
        try:
            async with Kubelet(k8s_url, NAMESPACE) as kubelet:
                yield Stack(k8s, k8s_url, spark, spark_url, governance, governance_url, make_spawner, kubelet)
        finally:
            await reset_kubespawner()


def pod_env(stack: Stack, spawner: BERDLSpawner) -> dict[str, Any]:
    pod = stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, spawner.pod_name].raw
    return env_of(next(c for c in pod["spec"]["containers"] if c["name"] == "notebook"))
