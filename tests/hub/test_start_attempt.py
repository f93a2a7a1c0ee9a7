"""berdl_hub.start_attempt.StartAttempt without a spawner: the tear-down every way out of a server runs
(stop, failed start, the post-stop hook of a lost pod) does all three of its parts, whichever fails."""

from __future__ import annotations

import asyncio

import pytest
from berdl_hub import spark_connect
from berdl_hub.spark_connect import ServiceName
from berdl_hub.start_attempt import StartAttempt

pytestmark = pytest.mark.asyncio


class Objects:
    """ServerObjects as the tear-down uses it."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.deletes = 0

    async def delete(self) -> None:
        self.deletes += 1
        if self.error is not None:
            raise self.error


class Cluster:
    """ServerCluster as the tear-down uses it."""

    def __init__(self) -> None:
        self.left: list[str] = []

    async def leave(self, why: str) -> None:
        self.left.append(why)


def claim_default(pod_name: str) -> str:
    return spark_connect.claim("berdl", user="alice", default_server=True, pod_name=pod_name, pods=[])


@pytest.mark.parametrize("error", [None, RuntimeError("the API is gone"), asyncio.CancelledError()])
async def test_the_tear_down_frees_the_name_and_leaves_the_cluster_whatever_the_delete_does(
    error: BaseException | None,
) -> None:
    assert claim_default("jupyter-alice") == "jupyter-alice"
    service = ServiceName("berdl", "jupyter-alice", "jupyter-alice")
    objects, cluster = Objects(error), Cluster()
    attempt = StartAttempt(cluster=cluster, objects=objects)  # type: ignore[arg-type]
    if error is None:
        await attempt.tear_down(service, "the server stopped")
    else:
        with pytest.raises(type(error)):
            await attempt.tear_down(service, "the server stopped")
    assert objects.deletes == 1
    assert cluster.left == ["the server stopped"]
    # The production name is free again: another server of alice's takes it.
    assert claim_default("jupyter-alice-2") == "jupyter-alice"
    spark_connect.release("berdl", "jupyter-alice-2")
