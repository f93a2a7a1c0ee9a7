"""The services that cannot run here, in one event loop on a thread of their own: KBase Auth2 with its
login page, the Kubernetes API (kmock), the node that plays its pods, the Spark Cluster Manager and the
governance API.

The test (or scripts/local-hub) reads their state directly: the clusters the Spark stand-in holds, the
objects in the API, the node's pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kmock

from localhub.leftovers import Leftovers
from localhub.node import Node
from localhub.standins.governance import GovernanceApp
from localhub.standins.http import serve
from localhub.standins.kbase_auth2 import APPROVED_ROLE, KBaseAuth2
from localhub.standins.kube import NAMESPACE, StackApiServer
from localhub.standins.spark import SparkClusterManagerApp
from localhub.users import User

T = TypeVar("T")


# What the spawner reads and writes; kmock answers 404 for a resource it was not told about.
class LoopThread:
    """An asyncio loop running on a daemon thread; `run()` waits for a coroutine's result on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-standins", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 600) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


@dataclass
class StandIns:
    loop: LoopThread
    auth2: KBaseAuth2
    auth2_url: str
    api: StackApiServer
    api_url: str
    node: Node
    spark: SparkClusterManagerApp
    spark_url: str
    governance: GovernanceApp
    governance_url: str

    def objects(self, resource: str) -> dict[str, dict[str, Any]]:
        """The live objects of a resource ("v1/pods") in the users' namespace, by name."""

        async def read() -> dict[str, dict[str, Any]]:
            wanted = kmock.resource(resource)
            return {
                key[2]: obj.raw
                for key, obj in self.api.objects.items()
                if key[0] == wanted and key[1] == NAMESPACE and not obj.deleted
            }

        return self.loop.run(read())


#: The loggers of the stand-ins, whose records go to the stack's standins.log.
LOGGERS = ("berdl.localhub.node", "berdl.localhub.kubelet", "aiohttp.access", "kmock")


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """The stand-ins' loggers write to `path`, and only there (not in pytest's report of every failure),
    until the stack stops: a later stack in the same process logs to its own file."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def standins(
    users: list[User],
    *,
    host_root: Path,
    images: Mapping[str, str],
    log_dir: Path,
    leftovers: Leftovers | None = None,
) -> Iterator[StandIns]:
    """Start them all on a new loop thread; on exit, the node removes its pods and everything stops."""
    with _logging_to(log_dir / "standins.log"):
        yield from _standins(users, host_root=host_root, images=images, log_dir=log_dir, leftovers=leftovers)


def _standins(
    users: list[User],
    *,
    host_root: Path,
    images: Mapping[str, str],
    log_dir: Path,
    leftovers: Leftovers | None,
) -> Iterator[StandIns]:
    loop = LoopThread()
    stack = contextlib.AsyncExitStack()
    auth2 = KBaseAuth2()
    for user in users:
        auth2.add_user(user.name, customroles=[APPROVED_ROLE], token=user.kbase_token)
    spark = SparkClusterManagerApp(tokens={u.kbase_token for u in users})
    governance = GovernanceApp(credentials={u.kbase_token: u.minio for u in users})
    first = {u.name: u.kbase_token for u in users}

    def accept_everywhere(user: str, token: str) -> None:
        """A new KBase login (after a logout, say) is accepted by the services as the real ones accept
        it: they ask Auth2 whose the token is."""
        spark.alias(token, first[user])
        governance.credentials[token] = governance.credentials[first[user]]

    auth2.on_issue = accept_everywhere

    async def start() -> StandIns:
        auth2_url = await stack.enter_async_context(serve(auth2.app()))
        api = await stack.enter_async_context(StackApiServer())
        server = await stack.enter_async_context(kmock.Server(api))
        api_url = str(server.url).rstrip("/")
        spark_url = await stack.enter_async_context(serve(spark.app()))
        governance_url = await stack.enter_async_context(serve(governance.app()))
        node = Node(
            api_url,
            NAMESPACE,
            host_root=host_root,
            images=images,
            log_dir=log_dir / "pods",
            leftovers=leftovers,
        )
        await stack.enter_async_context(node)
        return StandIns(
            loop, auth2, auth2_url, api, api_url, node, spark, spark_url, governance, governance_url
        )

    try:
        yield loop.run(start(), timeout=120)
    finally:
        try:
            loop.run(stack.aclose(), timeout=600)
        finally:
            loop.close()
