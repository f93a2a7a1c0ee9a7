"""berdl_hub.user_cluster without a spawner: who creates the user's cluster, who shares it, who deletes it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from berdl_hub.services import SparkCluster
from berdl_hub.user_cluster import ClusterShare, acquire, release, user_lock

pytestmark = pytest.mark.asyncio

SMALL = {"worker_count": 2}
LARGE = {"worker_count": 8}


class Manager:
    """Counts creates and deletes; `fail_delete` makes deletes fail."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.deleted = 0
        self.fail_delete = False

    async def create(self, config: Mapping[str, Any]) -> SparkCluster:
        await asyncio.sleep(0.01)  # others may ask meanwhile
        self.created.append(dict(config))
        n = len(self.created)
        return SparkCluster(f"c{n}", f"spark://master-{n}:7077", "")

    async def delete(self) -> bool:
        if self.fail_delete:
            return False
        self.deleted += 1
        return True


async def test_the_first_creates_the_second_shares_the_last_deletes() -> None:
    manager, a, b = Manager(), ClusterShare(), ClusterShare()
    first = await acquire(a, [b], SMALL, manager.create)
    second = await acquire(b, [a], LARGE, manager.create)
    assert manager.created == [SMALL]
    assert (first.created is not None, second.created) == (True, None)
    assert second.master_url == first.master_url
    assert second.shared_config == SMALL  # b asked for LARGE: the caller tells the user
    assert await release(a, [b], manager.delete) is False
    assert manager.deleted == 0
    assert await release(b, [a], manager.delete) is True
    assert manager.deleted == 1
    assert (a.holds, b.holds) == (False, False)


async def test_a_failed_delete_stays_a_duty_and_shares_round_trip_through_state() -> None:
    manager, a = Manager(), ClusterShare()
    await acquire(a, [], SMALL, manager.create)
    restored = ClusterShare.from_state(a.to_state())
    assert restored == a
    manager.fail_delete = True
    assert await release(restored, [], manager.delete) is True
    assert restored.to_state() == {"delete_pending": True}
    manager.fail_delete = False
    assert await release(restored, [], manager.delete) is True
    assert (manager.deleted, restored.to_state()) == (1, {})
    # A server that never held the cluster deletes nothing.
    assert await release(ClusterShare(), [], manager.delete) is False


async def test_under_the_user_lock_servers_starting_together_make_one_cluster() -> None:
    manager = Manager()
    shares = [ClusterShare() for _ in range(5)]

    async def start(me: ClusterShare) -> str:
        async with user_lock("alice"):
            return (await acquire(me, [s for s in shares if s is not me], SMALL, manager.create)).master_url

    urls = await asyncio.gather(*(start(s) for s in shares))
    assert len(manager.created) == 1
    assert len(set(urls)) == 1

    async def stop(me: ClusterShare) -> None:
        async with user_lock("alice"):
            await release(me, [s for s in shares if s is not me], manager.delete)

    await asyncio.gather(*(stop(s) for s in shares))
    assert manager.deleted == 1
    assert user_lock("alice") is not user_lock("bob")


async def test_the_duty_to_delete_is_recorded_before_the_create_is_sent() -> None:
    """A caller that dies while the create is in flight leaves a share whose release deletes."""
    manager, a, sibling = Manager(), ClusterShare(), ClusterShare()
    recorded: list[dict[str, Any]] = []
    seen_by_create: list[list[dict[str, Any]]] = []

    async def create(config: Mapping[str, Any]) -> SparkCluster:
        seen_by_create.append(list(recorded))  # what was stored when the request left
        return await manager.create(config)

    await acquire(a, [], SMALL, create, record=lambda: recorded.append(a.to_state()))
    assert seen_by_create == [[{"delete_pending": True}]]
    assert (a.holds, a.delete_pending) == (True, False)

    # The hub died in flight: what it stored is all a new hub knows.
    orphan = ClusterShare.from_state(recorded[0])
    # A sibling that holds the cluster keeps it alive ...
    sibling.holds, sibling.master_url = True, a.master_url
    assert await release(ClusterShare.from_state(recorded[0]), [sibling], manager.delete) is False
    assert manager.deleted == 0
    # ... and without one, the orphan's release deletes it.
    assert await release(orphan, [], manager.delete) is True
    assert (manager.deleted, orphan.to_state()) == (1, {})
