"""A hub killed while a server starts: on its next start JupyterHub polls the server and, when poll()
says it runs (a Pending pod does), asks get_url() where it is. The URL it stored before start() ran is a
placeholder; the spawner answers with the pod's address (tests/e2e/test_failures.py runs the whole)."""

from __future__ import annotations

import asyncio

import pytest
from berdl_hub.spawner import BERDLSpawner
from jupyterhub import orm
from jupyterhub.objects import Server

from localhub.standins.kube import NAMESPACE
from tests.hub.hubtest_stack import Stack

pytestmark = pytest.mark.asyncio

PLACEHOLDER_PORT = 47123  # what JupyterHub stored: a random port on the hub's host


def revived(stack: Stack, spawner: BERDLSpawner) -> BERDLSpawner:
    """The spawner object a restarted hub makes: the stored state and the stored server row."""
    again = stack.spawner()
    again.load_state(spawner.get_state())
    row = orm.Server(proto="http", ip="", port=PLACEHOLDER_PORT, base_url="/user/alice/", cookie_name="c")
    again.server = Server(orm_server=row)
    return again


async def set_pod_status(stack: Stack, spawner: BERDLSpawner, status: dict[str, object]) -> None:
    stack.kubelet.left_alone.add(spawner.pod_name)
    url = f"/api/v1/namespaces/{NAMESPACE}/pods/{spawner.pod_name}"
    async with stack.k8s.patch(url, json={"status": status}) as patched:
        assert patched.status == 200
    reflector = spawner.pod_reflector
    for _ in range(200):  # until the hub's watch has seen it
        pod = reflector.pods.get(f"{NAMESPACE}/{spawner.pod_name}") if reflector else None
        if pod and all(pod["status"].get(k) == v for k, v in status.items()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the pod reflector never saw {status}")


async def test_a_pod_still_starting_is_found_at_its_own_address(stack: Stack) -> None:
    spawner = stack.spawner()
    await spawner.start()
    # The node gave the pod its address; berdl-init (or the notebook) is still running.
    await set_pod_status(
        stack, spawner, {"phase": "Pending", "podIP": "127.0.0.7", "containerStatuses": None}
    )
    again = revived(stack, spawner)
    assert await again.poll() is None  # KubeSpawner: a Pending pod is running
    assert await again.get_url() == "http://127.0.0.7:8888/user/alice/"
    await again.stop()


async def test_a_running_pod_s_url_is_the_stored_one(stack: Stack) -> None:
    # A hub restarted while the server runs: the URL it stored is right, and JupyterHub, which compares
    # the two whole URLs, changes nothing.
    spawner = stack.spawner()
    await spawner.start()
    again = revived(stack, spawner)
    again.server.ip, again.server.port = "127.0.0.1", 8888
    assert await again.poll() is None
    assert await again.get_url() == again.server.url == "http://127.0.0.1:8888/user/alice/"
    await again.stop()


async def test_a_pod_without_an_address_yet_keeps_the_stored_url(stack: Stack) -> None:
    spawner = stack.spawner()
    await spawner.start()
    await set_pod_status(stack, spawner, {"phase": "Pending", "podIP": None, "containerStatuses": None})
    again = revived(stack, spawner)
    assert await again.poll() is None
    assert await again.get_url() == again.server.url
    assert again.server.url.endswith(f":{PLACEHOLDER_PORT}/user/alice/")
    await again.stop()
