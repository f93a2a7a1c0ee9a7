"""The Kubernetes API stand-in ends a watch as a real API server does: after its `timeoutSeconds`."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import kmock
import pytest

from localhub.standins.kube import NAMESPACE, ApiServer

pytestmark = pytest.mark.asyncio
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-alice"}, "spec": {"containers": []}}


async def watch(url: str, **params: str) -> tuple[list[dict], float]:
    """The events of one watch of the pods, and how long it lasted."""
    started = time.monotonic()
    events = []
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{url}/api/v1/namespaces/{NAMESPACE}/pods", params={"watch": "true", **params}
        ) as response,
    ):
        assert response.status == 200
        async for line in response.content:
            if line.strip():
                events.append(json.loads(line))
    return events, time.monotonic() - started


async def test_a_watch_ends_after_its_timeout_seconds_with_the_events_it_saw() -> None:
    async with ApiServer() as api, kmock.Server(api) as server:
        api.resources["v1/pods"] = {}
        url = str(server.url).rstrip("/")
        pods = f"{url}/api/v1/namespaces/{NAMESPACE}/pods"
        async with aiohttp.ClientSession() as session, session.post(pods, json=POD) as created:
            assert created.status in (200, 201)
        events, seconds = await asyncio.wait_for(watch(url, timeoutSeconds="1"), 10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "jupyter-alice")]
    assert 1 <= seconds < 5


async def test_a_watch_without_timeout_seconds_stays_open() -> None:
    async with ApiServer() as api, kmock.Server(api) as server:
        api.resources["v1/pods"] = {}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(watch(str(server.url).rstrip("/")), 3)
