"""One Spark cluster per user, shared by all of that user's servers.

The Spark Cluster Manager keeps one cluster per user: a second `POST /clusters` replaces the first, and a
`DELETE /clusters` removes the cluster every server of the user uses. So the first server of a user that
starts creates the cluster, the user's other servers take the same master URL, and the cluster is deleted
when the last server that uses it stops, and only then.

Each server keeps a `ClusterShare` (its spawner's state, so it survives hub restarts). `acquire` and
`release` take the server's own share and the shares of the user's other servers, and run under a lock
per user, so two servers starting or stopping at the same moment see each other's result. Nothing here
knows about spawners: the caller says which shares are its siblings and how to create or delete.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .services import SparkCluster

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
    """

    holds: bool = False
    master_url: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    delete_pending: bool = False

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.holds:
            state.update(holds=True, master_url=self.master_url, config=self.config)
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
    if holder is not None:
        me.holds, me.master_url = True, holder.master_url
        return Acquired(holder.master_url, None, dict(holder.config))
    me.delete_pending = True
    record()
    cluster = await create(config)
    me.holds, me.master_url, me.delete_pending = True, cluster.master_url, False
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
