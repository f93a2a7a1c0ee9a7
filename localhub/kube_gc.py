"""Kubernetes' garbage collection of dependents, for the one kind the hub's pods own: Secrets.

A real cluster deletes an object whose ownerReference names a deleted owner. kmock does no garbage
collection, so the node stand-in calls this when a pod is gone. kmock also ignores label and field
selectors: the Secrets are listed whole and filtered here.
"""

from __future__ import annotations

import aiohttp


async def delete_dependents(
    session: aiohttp.ClientSession, api_url: str, namespace: str, owner_uid: str
) -> list[str]:
    """Delete the Secrets of `namespace` owned by the object with uid `owner_uid`; returns their names."""
    secrets = f"{api_url}/api/v1/namespaces/{namespace}/secrets"
    async with session.get(secrets) as response:
        items = (await response.json()).get("items", []) if response.status == 200 else []
    deleted = []
    for secret in items:
        owners = secret.get("metadata", {}).get("ownerReferences") or []
        if any(owner.get("uid") == owner_uid for owner in owners):
            name = secret["metadata"]["name"]
            async with session.delete(f"{secrets}/{name}") as response:
                if response.status in (200, 202, 404):
                    deleted.append(name)
    return deleted
