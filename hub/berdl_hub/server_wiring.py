"""How one server's collaborators are made from its spawner: the record of a start (its part in its
user's Spark cluster, the objects it owns beside its pod) and the list of those objects.

Functions of a BERDLSpawner, kept apart from it so that the spawner reads as what it is, the coordinator of
a start and a stop; what each collaborator does is in its own module (`user_cluster`, `server_objects`).
They hand the collaborators the spawner's own means as plain functions: its Spark client (`_spark`, which
follows the settings of the moment) and its user's token (`_user_token`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import credentials, server_objects, spark_connect, spark_network, upstream
from .server_objects import Calls, ServerObjects
from .start_attempt import StartAttempt
from .user_cluster import ClusterShare, ServerCluster

if TYPE_CHECKING:
    from .spawner import BERDLSpawner


def new_attempt(spawner: BERDLSpawner) -> StartAttempt:
    """The record of a new start of `spawner`'s server, or of a restarted hub's first look at it."""
    name = upstream.log_name(spawner)
    cluster = ServerCluster(
        user=spawner.user.name,
        share=spawner.saved.share,
        manager=spawner._spark,
        token=spawner._user_token,
        siblings=lambda: _sibling_shares(spawner),
        save=lambda: upstream.save_state(spawner),
        fail_on_error=spawner.spark_failure_policy == "fail",
        log=spawner.log,
        name=name,
    )
    timeouts = spawner.k8s_api_request_timeout, spawner.k8s_api_request_retry_timeout
    objects = ServerObjects(
        spawner.owned_objects(),
        Calls(upstream.kube_client, *timeouts),
        pod_name=spawner.pod_name,
        pod_namespace=spawner.namespace,
        log=spawner.log,
        server=name,
    )
    return StartAttempt(cluster=cluster, objects=objects)


def owned_objects(spawner: BERDLSpawner) -> list[server_objects.Owned]:
    """The objects the server owns beside its pod (server_objects), in the order they are made: the
    Secret first, which the notebook container waits for; the NetworkPolicies to its user's Spark pods
    when there are Spark clusters."""
    owned: list[server_objects.Owned] = [
        credentials.CredentialsSecret(spawner.credential_values),
        spark_connect.SparkConnectService(
            lambda: spawner.saved.service.held(upstream.reflected_pods(spawner)), spawner.port
        ),
    ]
    if spawner.spark_cluster_manager_url:
        user_pods = {"user": spawner.user.name, "spark_namespace": spawner.spark_namespace}
        owned += [spark_network.NotebookSide(**user_pods), spark_network.ClusterSide(**user_pods)]
    return owned


def _sibling_shares(spawner: BERDLSpawner) -> list[ClusterShare]:
    """The Spark shares of the user's other servers (those of BERDL's spawner: a server of another
    spawner class has none)."""
    from .spawner import BERDLSpawner  # imported here: spawner.py imports this module

    siblings = upstream.sibling_spawners(spawner)
    return [sibling.saved.share for sibling in siblings if isinstance(sibling, BERDLSpawner)]
