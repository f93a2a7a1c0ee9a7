"""The Kubernetes API stand-in behaves as a real API server where the project relies on it: a watch ends
after its `timeoutSeconds` and resumes from a listing's resourceVersion; a Secret's stringData is stored as
data; a replace is refused on a stale resourceVersion."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import kmock
import pytest

from localhub.standins import kube
from localhub.standins.faults import LeanApiServer
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


async def listing_version(session: aiohttp.ClientSession, pods: str) -> str:
    """The resourceVersion a listing of the pods reports: a watch from it is sent what changed since."""
    async with session.get(pods) as listed:
        return str((await listed.json())["metadata"]["resourceVersion"])


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


async def test_a_watch_misses_no_object_created_while_it_sends_those_already_there() -> None:
    """A watch sends every object there, then every change from the moment it read them: a pod created
    while the first ones are still being sent reaches it too (KubeSpawner's reflector opens a new watch
    every 10 s, in the middle of 200 spawns). Here the watcher reads nothing until the new pods are made,
    so the server is still sending the 300 there (12 MB) while they are created."""
    bulky = {**POD["metadata"], "annotations": {"filler": "x" * 40_000}}
    async with LeanApiServer() as api, kmock.Server(api) as server, aiohttp.ClientSession() as session:
        pods = f"{str(server.url).rstrip('/')}/api/v1/namespaces/{NAMESPACE}/pods"

        async def create(name: str) -> None:
            async with session.post(pods, json={**POD, "metadata": {**bulky, "name": name}}) as created:
                assert created.status == 201

        await asyncio.gather(*(create(f"there-{i}") for i in range(300)))
        params = {"watch": "true", "timeoutSeconds": "3"}
        async with session.get(pods, params=params) as watching:
            await asyncio.sleep(0.3)  # the server reads the 300 and starts sending them
            await asyncio.gather(*(create(f"new-{i}") for i in range(20)))
            seen = {
                json.loads(line)["object"]["metadata"]["name"]
                async for line in watching.content
                if line.strip()
            }
    assert {f"there-{i}" for i in range(300)} | {f"new-{i}" for i in range(20)} <= seen


async def test_a_watch_from_a_listings_version_is_sent_what_changed_since() -> None:
    """KubeSpawner's reflector lists, then watches from the listing's resourceVersion. A pod deleted in
    between must reach it as DELETED (a real API server sends it): otherwise the reflector keeps the pod
    until its next listing, and a start that deletes a pod of the same name waits for it that long."""
    async with ApiServer() as api, kmock.Server(api) as server, aiohttp.ClientSession() as session:
        api.resources["v1/pods"] = {}
        url = str(server.url).rstrip("/")
        pods = f"{url}/api/v1/namespaces/{NAMESPACE}/pods"
        for name in ("jupyter-alice", "jupyter-bob"):
            async with session.post(pods, json={**POD, "metadata": {"name": name}}) as created:
                assert created.status in (200, 201)
        async with session.get(pods) as listed:
            listing = await listed.json()
        version = listing["metadata"]["resourceVersion"]
        async with session.delete(f"{pods}/jupyter-alice") as deleted:
            assert deleted.status == 200
        async with session.patch(
            f"{pods}/jupyter-bob",
            json={"metadata": {"labels": {"seen": "yes"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as patched:
            bob = await patched.json()
        async with session.get(f"{pods}/jupyter-bob") as fetched:
            assert (await fetched.json())["metadata"]["resourceVersion"] == bob["metadata"]["resourceVersion"]
        events, _ = await asyncio.wait_for(watch(url, timeoutSeconds="1", resourceVersion=version), 10)
    assert sorted(item["metadata"]["name"] for item in listing["items"]) == ["jupyter-alice", "jupyter-bob"]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("DELETED", "jupyter-alice"),
        ("MODIFIED", "jupyter-bob"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert int(version) < versions[0] < versions[1] == int(bob["metadata"]["resourceVersion"])


@pytest.mark.parametrize("server_class", [ApiServer, LeanApiServer])
async def test_each_change_keeps_its_own_version_once_the_object_is_deleted(
    server_class: type[ApiServer],
) -> None:
    """A client resuming from its last event's version must not skip the delete: the create's event
    keeps the version it was sent with, and the delete's is later."""
    async with server_class() as api, kmock.Server(api) as server, aiohttp.ClientSession() as session:
        api.resources["v1/pods"] = {}
        url = str(server.url).rstrip("/")
        pods = f"{url}/api/v1/namespaces/{NAMESPACE}/pods"
        version = await listing_version(session, pods)
        async with session.post(pods, json=POD) as created:
            made = (await created.json())["metadata"]["resourceVersion"]
        async with session.delete(f"{pods}/jupyter-alice") as deleted:
            assert deleted.status == 200
        events, _ = await asyncio.wait_for(watch(url, timeoutSeconds="1", resourceVersion=version), 10)
        after_create, _ = await asyncio.wait_for(watch(url, timeoutSeconds="1", resourceVersion=made), 10)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    assert events[0]["object"]["metadata"]["resourceVersion"] == made
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(made)
    assert [e["type"] for e in after_create] == ["DELETED"]


async def test_a_watch_from_a_version_no_longer_kept_is_told_it_expired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kube, "JOURNAL_LENGTH", 3)
    async with ApiServer() as api, kmock.Server(api) as server, aiohttp.ClientSession() as session:
        api.resources["v1/pods"] = {}
        url = str(server.url).rstrip("/")
        pods = f"{url}/api/v1/namespaces/{NAMESPACE}/pods"
        version = await listing_version(session, pods)
        for index in range(4):
            async with session.post(pods, json={**POD, "metadata": {"name": f"p{index}"}}) as created:
                assert created.status in (200, 201)
        events, seconds = await asyncio.wait_for(watch(url, timeoutSeconds="5", resourceVersion=version), 10)
    assert [(e["type"], e["object"]["code"], e["object"]["reason"]) for e in events] == [
        ("ERROR", 410, "Expired")
    ]
    assert seconds < 4  # the watch ends with it


async def test_a_watch_without_timeout_seconds_stays_open() -> None:
    async with ApiServer() as api, kmock.Server(api) as server:
        api.resources["v1/pods"] = {}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(watch(str(server.url).rstrip("/")), 3)


async def test_a_secret_is_stored_as_an_api_server_stores_it_and_replaced_only_when_current() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"KEY": "value"}}
    async with ApiServer() as api, kmock.Server(api) as server, aiohttp.ClientSession() as session:
        api.resources["v1/secrets"] = {}
        secrets = f"{str(server.url).rstrip('/')}/api/v1/namespaces/{NAMESPACE}/secrets"
        async with session.post(secrets, json=secret) as response:
            stored = await response.json()
        assert stored["data"] == {"KEY": "dmFsdWU="}
        assert "stringData" not in stored
        assert "status" not in stored  # only pods have one
        assert stored["metadata"]["managedFields"][0]["fieldsV1"]["f:data"] == {"f:KEY": {}}
        assert "value" not in json.dumps(stored["metadata"]["managedFields"])

        stale = {
            **stored,
            "metadata": {**stored["metadata"], "resourceVersion": "0"},
            "data": {"KEY": "eA=="},
        }
        async with session.put(f"{secrets}/s", json=stale) as response:
            assert response.status == 409
            assert (await response.json())["reason"] == "Conflict"
        current = {
            **stored,
            "data": {"KEY": "eQ=="},
            "metadata": {"name": "s", "resourceVersion": stored["metadata"]["resourceVersion"]},
        }
        async with session.put(f"{secrets}/s", json=current) as response:
            assert response.status == 200
        async with session.get(f"{secrets}/s") as response:
            replaced = await response.json()
        assert replaced["data"] == {"KEY": "eQ=="}
        assert replaced["metadata"]["uid"] == stored["metadata"]["uid"]
        assert replaced["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]
        async with session.put(f"{secrets}/nothere", json=current) as response:
            assert response.status == 404


async def test_a_status_for_a_pod_of_the_same_name_deleted_since_is_refused() -> None:
    """A kubelet's status names the pod's uid (a real API server refuses a patch whose metadata.uid is not
    the object's, 409): a pod deleted and created again under its name (KubeSpawner does so after a 409
    on create) must not take the status of the one played before it, or it is never played."""
    async with ApiServer() as api, kmock.Server(api) as server, aiohttp.ClientSession() as session:
        api.resources["v1/pods"] = {}
        pods = f"{str(server.url).rstrip('/')}/api/v1/namespaces/{NAMESPACE}/pods"
        async with session.post(pods, json=POD) as created:
            old_uid = (await created.json())["metadata"]["uid"]
        async with session.delete(f"{pods}/jupyter-alice") as deleted:
            assert deleted.status == 200
        async with session.post(pods, json=POD) as created:
            new_uid = (await created.json())["metadata"]["uid"]
        stale = {"metadata": {"uid": old_uid}, "status": {"phase": "Running", "podIP": "127.0.0.9"}}

        async with session.patch(f"{pods}/jupyter-alice", json=stale) as refused:
            assert refused.status == 409
            assert "Precondition failed" in (await refused.json())["message"]
        async with session.get(f"{pods}/jupyter-alice") as current:
            assert (await current.json())["status"] == {"phase": "Pending"}
        fresh = {"metadata": {"uid": new_uid}, "status": {"phase": "Pending", "podIP": "127.0.0.9"}}
        async with session.patch(f"{pods}/jupyter-alice", json=fresh) as taken:
            assert taken.status == 200
        async with session.get(f"{pods}/jupyter-alice") as current:
            assert (await current.json())["status"]["podIP"] == "127.0.0.9"


async def test_the_lean_api_server_creates_and_deletes_as_an_api_server_does() -> None:
    """LeanApiServer (the bench's and the fault tests') serves creates and deletes without kmock's request
    machinery; what it answers, stores and sends to watches is still an API server's."""
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"podSelector": {}},
    }
    async with LeanApiServer() as api, kmock.Server(api) as server, aiohttp.ClientSession() as session:
        api.instant_pods = True
        url = str(server.url).rstrip("/")
        pods = f"{url}/api/v1/namespaces/{NAMESPACE}/pods"
        policies = f"{url}/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies"
        watching = asyncio.create_task(watch(url, timeoutSeconds="2"))
        await asyncio.sleep(0.2)  # the watch is open

        async with session.post(pods, json=POD) as created:
            assert created.status == 201
            pod = await created.json()
        assert pod["metadata"]["namespace"] == NAMESPACE
        assert pod["metadata"]["uid"]
        assert pod["status"]["phase"] == "Running"  # instant_pods
        assert pod["metadata"]["managedFields"][0]["manager"] == "Python"  # aiohttp's User-Agent
        async with session.post(pods, json=POD) as again:
            assert again.status == 409
            assert (await again.json())["reason"] == "AlreadyExists"
        async with session.get(f"{pods}/jupyter-alice") as read:  # kmock's own read sees the same object
            assert (await read.json())["metadata"]["uid"] == pod["metadata"]["uid"]
        async with session.post(policies, json=policy) as created:
            assert created.status == 201
        async with session.get(policies) as listed:
            assert [p["metadata"]["name"] for p in (await listed.json())["items"]] == ["p"]

        async with session.delete(f"{pods}/jupyter-alice") as deleted:
            assert deleted.status == 200
            assert (await deleted.json())["metadata"]["uid"] == pod["metadata"]["uid"]
        async with session.delete(f"{pods}/jupyter-alice") as again:
            assert again.status == 404
            assert (await again.json())["reason"] == "NotFound"
        async with session.get(f"{pods}/jupyter-alice") as read:
            assert read.status == 404
        assert [key[0].plural for key in api.objects] == ["networkpolicies"]  # the deleted pod is forgotten
        events, _ = await watching
    assert [(e["type"], e["object"]["metadata"]["uid"]) for e in events] == [
        ("ADDED", pod["metadata"]["uid"]),
        ("DELETED", pod["metadata"]["uid"]),
    ]


async def test_the_lean_api_server_leaves_a_delete_held_by_a_finalizer_to_kmock() -> None:
    held = {**POD, "metadata": {"name": "jupyter-alice", "finalizers": ["example.com/hold"]}}
    async with LeanApiServer() as api, kmock.Server(api) as server, aiohttp.ClientSession() as session:
        pods = f"{str(server.url).rstrip('/')}/api/v1/namespaces/{NAMESPACE}/pods"
        async with session.post(pods, json=held) as created:
            assert created.status == 201
        async with session.delete(f"{pods}/jupyter-alice") as deleted:
            assert deleted.status == 200
        async with session.get(f"{pods}/jupyter-alice") as read:
            assert (await read.json())["metadata"]["deletionTimestamp"]  # marked, kept until released
