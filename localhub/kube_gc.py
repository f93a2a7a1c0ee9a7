"""Kubernetes' garbage collection of dependents, for the kinds the hub's pods own: Secrets and Services.

A real cluster deletes an object whose ownerReference names a deleted owner. kmock does no garbage
collection, so the node stand-in calls this when a pod is gone. kmock also ignores label and field
selectors: the objects are listed whole and filtered here.
"""

from __future__ import annotations

import aiohttp

#: The resources a user pod owns objects of (the server's objects, berdl_hub.server_objects).
OWNED = ("secrets", "services")


async def delete_dependents(
    session: aiohttp.ClientSession, api_url: str, namespace: str, owner_uid: str
) -> list[str]:
    """Delete the objects of `namespace` owned by the object with uid `owner_uid`; returns them as
    "resource/name"."""
    deleted = []
    for resource in OWNED:
        collection = f"{api_url}/api/v1/namespaces/{namespace}/{resource}"
        async with session.get(collection) as response:
            items = (await response.json()).get("items", []) if response.status == 200 else []
        for item in items:
            owners = item.get("metadata", {}).get("ownerReferences") or []
            if any(owner.get("uid") == owner_uid for owner in owners):
                name = item["metadata"]["name"]
                async with session.delete(f"{collection}/{name}") as response:
                    if response.status in (200, 202, 404):
                        deleted.append(f"{resource}/{name}")
    return deleted
