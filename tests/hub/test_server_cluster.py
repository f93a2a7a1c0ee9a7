"""berdl_hub.user_cluster.ServerCluster without a spawner or an emulator: one server's part in its user's
Spark cluster, every branch of the duty to delete, and the failure policy.

A cluster test that needs a whole spawner (its state in the hub's database, KubeSpawner's start) goes in
test_lifecycle.py (one server) or test_secret_and_cluster.py (several servers of a user)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from berdl_hub.errors import SpawnRefused
from berdl_hub.services import ServiceError, SparkCluster
from berdl_hub.user_cluster import SHARED_OTHER_SIZE, ClusterShare, ServerCluster

pytestmark = pytest.mark.asyncio

SMALL = {"worker_count": 2}
LARGE = {"worker_count": 8}
TOKEN = "kbase-token-alice-0123456789"

TIMEOUT = ServiceError("Spark Cluster Manager", "timeout", "no answer within 1 s")
BUSY = ServiceError("Spark Cluster Manager", "http", "answered 503", status=503)
REFUSED = ServiceError("Spark Cluster Manager", "http", "answered 400 (ValidationError)", status=400)
GONE = ServiceError("Spark Cluster Manager", "http", "answered 404", status=404)


class Manager:
    """The Spark Cluster Manager's client as ServerCluster uses it: what it was asked, what it answers."""

    service = "Spark Cluster Manager"

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.deletes = 0
        self.create_error: ServiceError | None = None
        self.delete_errors: list[ServiceError] = []  # raised by the next deletes, in order
        self.tokens: list[str] = []

    async def create(self, token: str, config: Mapping[str, Any]) -> SparkCluster:
        self.tokens.append(token)
        await asyncio.sleep(0)
        if self.create_error is not None:
            raise self.create_error
        self.created.append(dict(config))
        return SparkCluster(f"c{len(self.created)}", f"spark://master-{len(self.created)}:7077", "")

    async def delete(self, token: str) -> str:
        self.tokens.append(token)
        self.deletes += 1
        if self.delete_errors:
            raise self.delete_errors.pop(0)
        return "deleted"


class Server:
    """One server's ServerCluster with plain functions around it, as the spawner gives them."""

    def __init__(
        self,
        manager: Manager | None,
        *,
        share: ClusterShare | None = None,
        siblings: list[ClusterShare] | None = None,
        token: str | None = TOKEN,
        fail_on_error: bool = True,
    ) -> None:
        self.saved: list[dict[str, Any]] = []
        self.token = token
        self.share = share or ClusterShare()
        self.siblings = siblings if siblings is not None else []
        self.cluster = ServerCluster(
            user="alice",
            share=self.share,
            manager=lambda: manager,
            token=self._token,
            siblings=lambda: self.siblings,
            save=lambda: self.saved.append(self.share.to_state()),
            fail_on_error=fail_on_error,
            log=logging.getLogger("test_server_cluster"),
            name="alice",
        )

    async def _token(self) -> str | None:
        return self.token


# --- joining -----------------------------------------------------------------------------------------


async def test_the_first_server_creates_and_saves_the_duty_before_the_post() -> None:
    manager = Manager()
    server = Server(manager)
    await server.cluster.join(TOKEN, SMALL)
    assert manager.created == [SMALL]
    assert manager.tokens == [TOKEN]
    # Saved before POST /clusters (the duty to delete), then with the cluster held.
    assert server.saved == [
        {"delete_pending": True},
        {"holds": True, "master_url": "spark://master-1:7077", "config": SMALL},
    ]
    assert await server.cluster.master_url() == "spark://master-1:7077"


async def test_a_second_server_shares_and_is_told_when_its_profile_differs() -> None:
    manager = Manager()
    first = Server(manager)
    await first.cluster.join(TOKEN, SMALL)
    same = Server(manager, siblings=[first.share])
    await same.cluster.join(TOKEN, SMALL)
    bigger = Server(manager, siblings=[first.share, same.share])
    await bigger.cluster.join(TOKEN, LARGE)
    assert manager.created == [SMALL]
    assert same.share.master_url == bigger.share.master_url == first.share.master_url
    assert same.cluster.notes == []
    assert bigger.cluster.notes == [SHARED_OTHER_SIZE]


async def test_no_manager_no_cluster_and_nothing_to_release() -> None:
    server = Server(None, share=ClusterShare(delete_pending=True))
    await server.cluster.join(TOKEN, SMALL)
    assert await server.cluster.master_url() is None
    await server.cluster.leave("stopped")
    assert server.share.delete_pending  # kept for a hub that has a manager again
    assert server.saved == []


async def test_without_a_token_the_spawn_is_refused_and_an_owed_delete_is_kept() -> None:
    manager = Manager()
    server = Server(manager, share=ClusterShare(delete_pending=True))
    with pytest.raises(SpawnRefused, match="no KBase token"):
        await server.cluster.join(None, SMALL)
    assert manager.created == []
    assert server.share.to_state() == {"delete_pending": True}
    assert server.saved == [{"delete_pending": True}]


async def test_a_refused_create_built_nothing_and_keeps_only_an_earlier_duty() -> None:
    for owed in (False, True):
        manager = Manager()
        manager.create_error = REFUSED
        server = Server(manager, share=ClusterShare(delete_pending=owed))
        with pytest.raises(SpawnRefused, match="answered 400"):
            await server.cluster.join(TOKEN, SMALL)
        assert manager.deletes == 0
        assert server.share.delete_pending is owed, owed
        assert server.saved[-1] == ({"delete_pending": True} if owed else {})


@pytest.mark.parametrize("error", [TIMEOUT, BUSY], ids=["timeout", "5xx"])
async def test_a_create_that_may_have_built_the_cluster_deletes_it(error: ServiceError) -> None:
    manager = Manager()
    manager.create_error = error
    server = Server(manager)
    with pytest.raises(SpawnRefused, match="could not be created"):
        await server.cluster.join(TOKEN, SMALL)
    assert manager.deletes == 1
    assert server.share.to_state() == {}
    assert server.saved[-1] == {}


async def test_a_create_that_may_have_built_it_and_a_failed_delete_keep_the_duty() -> None:
    manager = Manager()
    manager.create_error = TIMEOUT
    manager.delete_errors = [BUSY]
    server = Server(manager)
    with pytest.raises(SpawnRefused):
        await server.cluster.join(TOKEN, SMALL)
    assert server.share.to_state() == {"delete_pending": True}
    assert server.saved[-1] == {"delete_pending": True}


async def test_the_continue_policy_starts_without_spark_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    manager = Manager()
    manager.create_error = REFUSED
    server = Server(manager, fail_on_error=False)
    await server.cluster.join(TOKEN, SMALL)
    assert await server.cluster.master_url() is None
    assert "Starting alice without a Spark cluster" in caplog.text


async def test_a_join_in_the_background_is_waited_for_and_its_refusal_raised_once() -> None:
    manager = Manager()
    manager.create_error = REFUSED
    server = Server(manager)
    server.cluster.begin_join(TOKEN, SMALL)
    with pytest.raises(SpawnRefused):
        await server.cluster.master_url()
    await server.cluster.settle()  # already seen: nothing left to wait for, nothing raised
    assert await server.cluster.master_url() is None


async def test_a_start_that_failed_first_settles_the_join_then_releases() -> None:
    manager = Manager()
    server = Server(manager)
    server.cluster.begin_join(TOKEN, SMALL)
    await server.cluster.settle()  # the start failed before it asked for the master URL
    assert server.share.holds
    await server.cluster.leave("the spawn failed")
    assert manager.deletes == 1
    assert server.share.to_state() == {}


# --- leaving -----------------------------------------------------------------------------------------


async def test_a_server_that_never_held_the_cluster_deletes_nothing() -> None:
    manager = Manager()
    await Server(manager).cluster.leave("stopped")
    assert manager.deletes == 0


async def test_a_server_whose_sibling_still_holds_the_cluster_leaves_it_and_owes_nothing() -> None:
    manager = Manager()
    first = Server(manager)
    await first.cluster.join(TOKEN, SMALL)
    second = Server(manager, siblings=[first.share])
    await second.cluster.join(TOKEN, SMALL)
    first.siblings = [second.share]
    # Even a duty left by an earlier failed delete is void while the cluster lives on for another server.
    first.share.delete_pending = True
    await first.cluster.leave("stopped")
    assert manager.deletes == 0
    assert first.share.to_state() == {}
    await second.cluster.leave("stopped")
    assert manager.deletes == 1


async def test_a_failed_delete_stays_a_duty_until_a_later_leave_succeeds() -> None:
    manager = Manager()
    server = Server(manager)
    await server.cluster.join(TOKEN, SMALL)
    manager.delete_errors = [BUSY]
    await server.cluster.leave("stopped")
    assert server.share.to_state() == {"delete_pending": True}
    await server.cluster.leave("after stop")
    assert manager.deletes == 2
    assert server.share.to_state() == {}


async def test_a_delete_answered_404_is_done() -> None:
    manager = Manager()
    server = Server(manager, share=ClusterShare(delete_pending=True))
    manager.delete_errors = [GONE]
    await server.cluster.leave("stopped")
    assert server.share.to_state() == {}


async def test_without_a_token_the_delete_is_owed(caplog: pytest.LogCaptureFixture) -> None:
    manager = Manager()
    server = Server(manager, share=ClusterShare(holds=True, master_url="spark://m:7077"), token=None)
    await server.cluster.leave("stopped")
    assert manager.deletes == 0
    assert server.share.to_state() == {"delete_pending": True}
    assert "no token in auth state" in caplog.text


async def test_a_duty_loaded_from_a_restarted_hubs_state_deletes() -> None:
    manager = Manager()
    server = Server(manager, share=ClusterShare.from_state({"delete_pending": True}))
    await server.cluster.leave("stopped")
    assert manager.deletes == 1
    assert manager.tokens == [TOKEN]
    assert server.share.to_state() == {}
