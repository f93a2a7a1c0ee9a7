"""What one start of a server knows, from its start() until the next one.

A new start makes a new record; a hub that restarted makes one for each server it finds, when it first
needs it (a stop, a reconcile). Nothing in it is saved with the spawner's state: it holds the user's
MinIO keys. What outlives a hub restart (the Spark share) lives in the spawner's state instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from .server_objects import ServerObjects
from .services import MinioCredentials
from .user_cluster import ServerCluster


@dataclass
class StartAttempt:
    cluster: ServerCluster  # the server's part in its user's Spark cluster, and the notes of the start
    objects: ServerObjects  # the objects it owns beside its pod, and which of them it deleted
    minio: MinioCredentials | None = None
    # KubeSpawner's own start is under way: a stop it makes then (a pod of the same name to replace, a
    # failed after_pod_created_hook) deletes only the pod, and a failed berdl-init ends the start.
    starting: bool = False

    @property
    def notes(self) -> list[str]:
        """What the user is told on the progress page, beside the pod's events."""
        return self.cluster.notes
