"""deploy/ as `kubectl kustomize` renders it, for the tests of what the cluster would receive."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def render(kustomization: Path = DEPLOY) -> list[dict[str, Any]]:
    """Every object the kustomization renders."""
    result = subprocess.run(
        [require_tool("kubectl"), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def overlay(tmp_path: Path, namespace: str) -> Path:
    """An overlay of deploy/ that only changes the namespace, as an operator would write it."""
    folder = tmp_path / "overlay"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "resources": [os.path.relpath(DEPLOY, folder)],
            }
        )
    )
    return folder


def assert_valid_strictly(objects: list[dict[str, Any]], version: str, folder: Path) -> None:
    """`kubernetes-validate --strict` for that Kubernetes version passes every object."""
    from tests.images.test_deploy import kubernetes_validate

    rendered = folder / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(objects))
    result = subprocess.run(
        [kubernetes_validate(), "--strict", "--kubernetes-version", version, str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(objects), result.stdout


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
