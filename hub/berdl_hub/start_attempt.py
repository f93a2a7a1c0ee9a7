"""What one start of a server knows, from its start() until the next one.

A new start makes a new record; a hub that restarted makes one for each server it finds, when it first
needs it (a stop, a reconcile). Nothing in it is saved with the spawner's state: it holds the user's
MinIO keys. What outlives a hub restart (the Spark share, the Service's name) lives in the spawner's state
instead (`server_state`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from . import init_report, metrics
from .init_report import InitRun
from .server_objects import ServerObjects
from .services import MinioCredentials
from .spark_connect import ServiceName
from .user_cluster import ServerCluster


@dataclass
class StartAttempt:
    cluster: ServerCluster  # the server's part in its user's Spark cluster, and the notes of the start
    objects: ServerObjects  # the objects it owns beside its pod, and which of them it deleted
    minio: MinioCredentials | None = None
    # KubeSpawner's own start is under way: a stop made then (a pod of the same name to replace, the
    # server's objects or an after_pod_created_hook failing) deletes only the pod, and a failed
    # berdl-init ends the start.
    starting: bool = False
    # What the metrics of this start need (metrics.SPAWN_PART_SECONDS): its profile's label, when it
    # began, how long the pod waited for the Spark cluster, when the pod was created, berdl-init's run.
    profile: str = metrics.DEFAULT_PROFILE
    began: float = field(default_factory=time.monotonic)
    spark_wait: float = 0.0
    pod_created: float | None = None
    init: InitRun | None = None

    async def master_url(self) -> str | None:
        """The Spark cluster's master URL, once the cluster is known; the wait counts as the start's
        `spark` part."""
        waited = time.monotonic()
        try:
            return await self.cluster.master_url()
        finally:
            self.spark_wait += time.monotonic() - waited

    def init_ended(self, pod: dict[str, Any] | None) -> None:
        """berdl-init's run, read from the pod's status and counted in its metrics once: when it failed
        or when the pod runs."""
        if self.init is None:
            self.init = init_report.record(pod, self.profile)

    async def tear_down(self, service: ServiceName, why: str) -> None:
        """What every way out of a server does: its objects go, its Service's name is free again, its
        part in the Spark cluster ends."""
        try:
            await self.objects.delete()
        finally:
            service.release()
            await self.cluster.leave(why)

    @property
    def notes(self) -> list[str]:
        """What the user is told on the progress page, beside the pod's events."""
        return self.cluster.notes

    def parts(self, running: float) -> list[tuple[str, float]]:
        """The parts of this start, once its pod runs (`running`, on the monotonic clock): the hub's own
        work until the pod was created, less the wait for the Spark cluster; that wait; berdl-init's run;
        the rest of the pod's start (scheduling, image pulls, the notebook container)."""
        if self.pod_created is None:
            return []
        init = self.init.seconds if self.init is not None else None
        parts = [
            ("hub", max(self.pod_created - self.began - self.spark_wait, 0.0)),
            ("spark", self.spark_wait),
        ]
        if init is not None:
            parts.append(("init", init))
        parts.append(("server", max(running - self.pod_created - (init or 0.0), 0.0)))
        return parts
