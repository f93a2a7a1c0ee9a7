"""One Spark cluster per user, shared by all of that user's servers.

The Spark Cluster Manager keeps one cluster per user: a second `POST /clusters` replaces the first, and a
`DELETE /clusters` removes the cluster every server of the user uses. So the first server of a user that
starts creates the cluster, the user's other servers take the same master URL, and the cluster is deleted
when the last server that uses it stops, and only then.

Each server keeps a `ClusterShare` (its spawner's state, so it survives hub restarts). `acquire` and
`release` take the server's own share and the shares of the user's other servers, and run under a lock
per user, so two servers starting or stopping at the same moment see each other's result.

`ServerCluster` is one server's side of it, from its start to its stop: join (share or create), the
failure policy, the duty to delete, and the release. Nothing here knows about spawners: it is given the
share, plain functions for the token, the sibling servers' shares and saving state, and the manager's
client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import metrics
from .errors import SpawnRefused
from .services import ServiceError, SparkCluster

# One lock per user and per event loop (a lock belongs to the loop it first waited on).
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def user_lock(user: str) -> asyncio.Lock:
    """The lock that orders the cluster steps of one user's servers."""
    locks = _locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(user, asyncio.Lock())


@dataclass
class ClusterShare:
    """One server's part in its user's cluster.

    holds: the server uses the cluster (from its start until its stop).
    delete_pending: the last delete this server attempted failed; the next release tries again.
    config: the cluster body this server asked for (or would have), to tell a second server apart.
    cluster_config: the body the cluster was created with (by this server or the one it shares with): its
    real size, which the notebook is told.
    """

    holds: bool = False
    master_url: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    delete_pending: bool = False
    cluster_config: dict[str, Any] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.holds:
            state.update(holds=True, master_url=self.master_url, config=self.config)
            if self.cluster_config != self.config:  # a server that shares a cluster of another size
                state["cluster_config"] = self.cluster_config
        if self.delete_pending:
            state["delete_pending"] = True
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> ClusterShare:
        state = state or {}
        return cls(
            holds=bool(state.get("holds")),
            master_url=state.get("master_url") or None,
            config=dict(state.get("config") or {}),
            delete_pending=bool(state.get("delete_pending")),
            # Kept only where it differs from the body the server asked for.
            cluster_config=dict(state.get("cluster_config") or state.get("config") or {}),
        )


@dataclass(frozen=True)
class Acquired:
    """What `acquire` did: the master URL, and whether the cluster was already there."""

    master_url: str
    created: SparkCluster | None
    shared_config: dict[str, Any] | None  # the existing cluster's body, when it was shared


async def acquire(
    me: ClusterShare,
    others: Iterable[ClusterShare],
    config: Mapping[str, Any],
    create: Callable[[Mapping[str, Any]], Awaitable[SparkCluster]],
    record: Callable[[], None] = lambda: None,
) -> Acquired:
    """Make `me` a user of the cluster: share one that a sibling holds, else create it with `config`.

    Call under `user_lock`. Before `create`, `me` takes the duty to delete (`delete_pending`) and
    `record` is called to store it: a caller that dies while the create is in flight leaves a share
    whose next release deletes the cluster. When `create` raises, `me` does not hold the cluster and
    keeps that duty; the caller clears it when it knows nothing was built.
    """
    me.config = dict(config)
    holder = next((s for s in others if s.holds and s.master_url), None)
    if holder is not None and holder.master_url:
        me.holds, me.master_url = True, holder.master_url
        me.cluster_config = dict(holder.cluster_config or holder.config)
        return Acquired(holder.master_url, None, dict(holder.config))
    me.delete_pending = True
    record()
    cluster = await create(config)
    me.holds, me.master_url, me.delete_pending = True, cluster.master_url, False
    me.cluster_config = dict(config)
    return Acquired(cluster.master_url, cluster, None)


async def release(
    me: ClusterShare,
    others: Iterable[ClusterShare],
    delete: Callable[[], Awaitable[bool]],
) -> bool:
    """`me` stops using the cluster; delete it when no other server of the user holds it.

    Call under `user_lock`. `delete` returns whether it succeeded; on failure the duty stays with `me`
    (`delete_pending`) for its next release. Returns whether a delete was attempted.
    """
    had_part = me.holds or me.delete_pending
    me.holds, me.master_url = False, None
    if not had_part:
        return False
    if any(s.holds for s in others):
        me.delete_pending = False  # the cluster lives on for the others: nothing to delete
        return False
    me.delete_pending = not await delete()
    return True


class ClusterManager(Protocol):
    """What a server needs of the Spark Cluster Manager (services.SparkClusterManager)."""

    service: str

    async def create(self, token: str, config: Mapping[str, Any]) -> SparkCluster: ...

    async def delete(self, token: str) -> str: ...


# The note a server gets when it shares a cluster that another of its user's servers made bigger or
# smaller than the profile chosen here.
SHARED_OTHER_SIZE = (
    "This server shares the Spark cluster of your other running server, with the size that server "
    "started it with, not the one of the profile chosen here."
)


class ServerCluster:
    """One server's part in its user's Spark cluster, from its start to its stop.

    `join()` runs during a start (as a task, while the pod is prepared; `master_url()` waits for it and
    `settle()` lets a failed start wait for it); `leave()` runs at every stop, also for a lost pod. The
    share is written with `save` whenever the duty to delete changes during a start, so that a hub that
    dies in the middle leaves it in its database.
    """

    def __init__(
        self,
        *,
        user: str,
        share: ClusterShare,
        manager: Callable[[], ClusterManager | None],
        token: Callable[[], Awaitable[str | None]],
        siblings: Callable[[], Iterable[ClusterShare]],
        save: Callable[[], None],
        fail_on_error: bool,
        log: logging.Logger | logging.LoggerAdapter[Any],
        name: str,
        profile: str = metrics.DEFAULT_PROFILE,
    ) -> None:
        self.user = user
        self.share = share
        self.manager = manager  # asked each time: the client follows the settings of the moment
        self.token = token
        self.siblings = siblings
        self.save = save
        self.fail_on_error = fail_on_error
        self.log = log
        self.name = name  # the server, in log lines
        self.profile = profile  # the start's profile, in metrics (the spawner sets it once it is chosen)
        self.notes: list[str] = []  # what the user is told on the progress page
        self._joining: asyncio.Future[None] | None = None

    # --- start ---------------------------------------------------------------------------------------
    def begin_join(self, token: str | None, config: Mapping[str, Any]) -> None:
        """Start joining the user's cluster in the background (see `join`)."""
        self._joining = asyncio.ensure_future(self.join(token, config))

    async def master_url(self) -> str | None:
        """The cluster's master URL once the join has ended (None: no cluster for this server); a refusal
        under the 'fail' policy is raised here, once."""
        joining, self._joining = self._joining, None
        if joining is not None:
            await joining
        return self.share.master_url if self.share.holds else None

    def sizes(self) -> dict[str, Any]:
        """The body the cluster this server uses was created with (empty without a cluster); ask once
        `master_url()` has answered."""
        return dict(self.share.cluster_config) if self.share.holds else {}

    async def settle(self) -> None:
        """Wait for a join still under way (it is bounded by the create's time-out), so that a start that
        failed before it asked for the master URL knows whether a cluster was made; its error was seen."""
        joining = self._joining
        if joining is not None:
            await asyncio.wait([joining])
            if not joining.cancelled():
                joining.exception()

    async def join(self, token: str | None, config: Mapping[str, Any]) -> None:
        """Use the user's cluster: the one another server holds, else a new one of `config`'s size."""
        manager = self.manager()
        if manager is None:
            return
        owed = self.share.delete_pending  # left by an earlier failed delete: a refused create keeps it
        async with user_lock(self.user):
            try:
                if not token:
                    raise ServiceError(manager.service, "auth", "no KBase token in the auth state")
                create = functools.partial(self._create, manager, token)
                got = await acquire(self.share, self.siblings(), config, create, record=self.save)
                self.save()
            except ServiceError as exc:
                metrics.spark_cluster_start(self.profile, _failed_outcome(exc))
                await self._after_failed_create(manager, exc, owed)
                return
        metrics.spark_cluster_start(self.profile, "created" if got.created else "shared")
        if got.shared_config is not None:
            self.log.info("%s shares its user's Spark cluster %s", self.name, got.master_url)
            if got.shared_config != self.share.config:
                self._note(SHARED_OTHER_SIZE)

    async def _create(self, manager: ClusterManager, token: str, config: Mapping[str, Any]) -> SparkCluster:
        started = time.monotonic()
        try:
            cluster = await manager.create(token, config)
        except ServiceError as exc:
            metrics.spark_cluster_create(self.profile, _failed_outcome(exc), time.monotonic() - started)
            raise
        metrics.spark_cluster_create(self.profile, "created", time.monotonic() - started)
        self.log.info("Spark cluster %s for %s: %s", cluster.cluster_id, self.name, cluster.master_url)
        return cluster

    async def _after_failed_create(self, manager: ClusterManager, exc: ServiceError, owed: bool) -> None:
        """Under the user's lock: settle the duty to delete, then apply the failure policy."""
        if exc.may_have_acted:
            # A time-out or a 5xx may still have built it; acquire() took the duty to delete.
            await self._release_locked(manager, "its creation failed")
        else:
            self.share.delete_pending = owed  # refused: the manager built nothing
        self.save()
        if self.fail_on_error:
            raise SpawnRefused(f"Your Spark cluster could not be created: {exc}.") from None
        self.log.warning("Starting %s without a Spark cluster: %s", self.name, exc)

    def _note(self, message: str) -> None:
        self.log.info("%s: %s", self.name, message)
        self.notes.append(message)

    # --- stop ----------------------------------------------------------------------------------------
    async def leave(self, why: str) -> None:
        """This server no longer uses its user's cluster; the last one to stop deletes it."""
        manager = self.manager()
        if manager is None or not (self.share.holds or self.share.delete_pending):
            return
        async with user_lock(self.user):
            await self._release_locked(manager, why)

    async def _release_locked(self, manager: ClusterManager, why: str) -> None:
        delete = functools.partial(self._delete, manager, why)
        deleted = await release(self.share, self.siblings(), delete)
        if not deleted:
            self.log.debug("Spark cluster of %s not deleted (%s): another server uses it", self.name, why)

    async def _delete(self, manager: ClusterManager, why: str) -> bool:
        """DELETE /clusters; errors are logged, never raised, so that stopping always completes."""
        token = await self.token()
        if not token:
            self.log.error("Cannot delete the Spark cluster of %s: no token in auth state", self.name)
            return False
        started = time.monotonic()
        try:
            message = await manager.delete(token)
        except ServiceError as exc:
            absent = exc.status == 404  # nothing to delete, said differently
            metrics.spark_cluster_delete("absent" if absent else "failed", time.monotonic() - started)
            if absent:
                return True
            self.log.error("Could not delete the Spark cluster of %s (%s): %s", self.name, why, exc)
            return False
        metrics.spark_cluster_delete("deleted", time.monotonic() - started)
        self.log.info("Deleted the Spark cluster of %s (%s): %s", self.name, why, message)
        return True


def _failed_outcome(error: ServiceError) -> str:
    """A failed create's outcome label (refused, timed_out, failed)."""
    outcome = metrics.call_outcome(error)
    return "failed" if outcome == "ok" else outcome
