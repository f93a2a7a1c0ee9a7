"""deploy/ as `kubectl kustomize` renders it: what `kubectl apply -k deploy/` sends to the cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def render(folder: Path = DEPLOY) -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of that kind whose name is `name`, or `name-<hash>` for a generated one."""
    (found,) = [
        d
        for d in documents
        if d["kind"] == kind
        and (d["metadata"]["name"] == name or d["metadata"]["name"].startswith(f"{name}-"))
    ]
    return found


def hub_settings(documents: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """The data of the generated ConfigMap berdl-hub-settings-<hash>."""
    return find(render() if documents is None else documents, "ConfigMap", "berdl-hub-settings")["data"]
