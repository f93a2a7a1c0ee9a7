"""What a server keeps in the spawner's state, JupyterHub's database, so that a restarted hub carries on
where the last one stopped.

- its part in its user's Spark cluster (`user_cluster.ClusterShare`): the master URL, the sizes, and the
  duty to delete, so that the user's servers still share one cluster and the last to stop deletes it;
- its Spark Connect Service's name (`spark_connect.ServiceName`), which the hub deletes the Service by (a
  default server's may be the production name, which is not the pod's).

Never a token or a key: those stay in the hub's memory. The keys are those the hub has always saved, so a
state saved by an earlier release loads unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .spark_connect import ServiceName
from .user_cluster import ClusterShare

#: The key of the cluster share in the spawner's state.
SPARK_KEY = "berdl_spark"


@dataclass
class ServerState:
    """What the server in the pod `service.pod_name` keeps in the spawner's state."""

    share: ClusterShare
    service: ServiceName

    @classmethod
    def new(cls, namespace: str, pod_name: str) -> ServerState:
        """A server that holds nothing yet: no part in a cluster, no Service name."""
        return cls(ClusterShare(), ServiceName(namespace, pod_name))

    @classmethod
    def from_state(cls, state: Mapping[str, Any], namespace: str, pod_name: str) -> ServerState:
        """What `state`, the spawner's saved state, holds of the server in the pod `pod_name`."""
        loaded = cls(ClusterShare.from_state(state.get(SPARK_KEY)), ServiceName(namespace, pod_name))
        loaded.service.load(state)
        return loaded

    def to_state(self) -> dict[str, Any]:
        """The keys to add to the spawner's state: none for a server that holds nothing."""
        state: dict[str, Any] = self.service.to_state()
        if share := self.share.to_state():
            state[SPARK_KEY] = share
        return state
