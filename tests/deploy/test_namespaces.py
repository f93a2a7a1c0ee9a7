"""Every namespace in deploy/ follows kustomize's `namespace`, also through an overlay that changes it,
and what renders passes `kubernetes-validate --strict` for the oldest and newest versions it bundles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.rendered import assert_valid_strictly, named, overlay, render
from tests.images.test_deploy import bundled_versions

CLUSTER_SCOPED = {"Namespace"}


def namespace_fields(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every `namespace` key anywhere in an object, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "namespace" and isinstance(value, str):
                yield f"{path}.{key}", value
            yield from namespace_fields(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from namespace_fields(value, f"{path}[{index}]")


def assert_all_in(objects: list[dict[str, Any]], namespace: str) -> None:
    for o in objects:
        where = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in o["metadata"], where
        else:
            assert o["metadata"].get("namespace") == namespace, where
        strays = [(field, value) for field, value in namespace_fields(o) if value != namespace]
        assert strays == [], where
    assert named(objects, "Namespace", namespace)
    binding = named(objects, "RoleBinding", "hub")
    account = named(objects, "ServiceAccount", binding["subjects"][0]["name"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub", "namespace": namespace}]
    assert account["metadata"]["namespace"] == namespace


def test_everything_renders_in_the_kustomization_namespace() -> None:
    assert_all_in(render(), "berdl")


def test_an_overlay_moves_every_namespace_the_rolebinding_subject_included(tmp_path: Path) -> None:
    objects = render(overlay(tmp_path, "research-hub"))
    assert_all_in(objects, "research-hub")
    assert len(objects) == len(render())


@pytest.mark.parametrize("version", bundled_versions())
@pytest.mark.parametrize("moved", [False, True], ids=["deploy", "overlay"])
def test_the_rendered_objects_pass_strict_validation(tmp_path: Path, version: str, moved: bool) -> None:
    objects = render(overlay(tmp_path, "research-hub")) if moved else render()
    assert_valid_strictly(objects, version, tmp_path)
