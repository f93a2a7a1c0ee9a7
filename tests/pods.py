"""Reading the pods the spawner builds, as Kubernetes JSON."""

from __future__ import annotations

from typing import Any


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's environment: each variable's value, or its `valueFrom` (a Secret's key, a field)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
