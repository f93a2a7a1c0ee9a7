"""What deploy/ gives an operator around the hub, as `kubectl kustomize` renders it and
`kubernetes-validate --strict` accepts it: the disruption budgets (off by default, on in an overlay),
the hub and the proxy kept apart, the image puller following the spawner's images, the Ingress example,
and the way a labelled monitoring namespace's Prometheus reaches the hub's metrics, and nobody else."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from localhub.prometheus import SCRAPE_CONFIG
from tests.deploy.netpol import Peer, allowed, pod, selects
from tests.deploy.rendered import DEPLOY, assert_valid_strictly, named, render
from tests.images.manifests import spawner_pod
from tests.images.test_deploy import bundled_versions

COMPONENTS = ["components/disruption-budgets", "examples/ingress"]


def overlay(tmp_path: Path, **kustomization: Any) -> Path:
    """An overlay of deploy/, as an operator writes one."""
    folder = tmp_path / "overlay"
    folder.mkdir(exist_ok=True)
    relative = os.path.relpath(DEPLOY, folder)
    document = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [relative],
        **kustomization,
    }
    if "components" in document:
        document["components"] = [f"{relative}/{c}" for c in document["components"]]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(document))
    return folder


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def with_components(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = overlay(tmp_path_factory.mktemp("components"), namespace="berdl", components=COMPONENTS)
    return render(folder)


def template(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = named(objects, kind, name)["spec"]["template"]
    return found


def test_the_budgets_and_the_ingress_are_off_by_default(default: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in default}
    assert "PodDisruptionBudget" not in kinds
    assert "Ingress" not in kinds


@pytest.mark.parametrize("version", [bundled_versions()[0], bundled_versions()[-1]])
def test_an_overlay_with_the_components_renders_and_passes_strict_validation(
    tmp_path: Path, with_components: list[dict[str, Any]], default: list[dict[str, Any]], version: str
) -> None:
    assert len(with_components) == len(default) + 3  # two budgets and the Ingress
    assert_valid_strictly(with_components, version, tmp_path)


def test_each_budget_keeps_exactly_its_pod(with_components: list[dict[str, Any]]) -> None:
    for name in ("hub", "proxy"):
        budget = named(with_components, "PodDisruptionBudget", name)
        assert budget["metadata"]["namespace"] == "berdl"
        assert budget["spec"]["minAvailable"] == 1
        for other in ("hub", "proxy"):
            labels = template(with_components, "Deployment", other)["metadata"]["labels"]
            assert selects(budget["spec"]["selector"], labels) == (other == name), (name, other)


def test_the_hub_and_the_proxy_prefer_nodes_apart(default: list[dict[str, Any]]) -> None:
    for name, other in (("hub", "proxy"), ("proxy", "hub")):
        affinity = template(default, "Deployment", name)["spec"]["affinity"]
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity["podAntiAffinity"]
        (preferred,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        term = preferred["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        for candidate in ("hub", "proxy"):
            labels = template(default, "Deployment", candidate)["metadata"]["labels"]
            assert selects(term["labelSelector"], labels) == (candidate == other), (name, candidate)


def puller_images(objects: list[dict[str, Any]]) -> dict[str, str]:
    spec = template(objects, "DaemonSet", "image-puller")["spec"]
    return {c["name"]: c["image"] for c in [*spec["initContainers"], *spec["containers"]]}


def test_the_image_puller_pulls_the_spawners_images_and_only_holds_a_pause(
    default: list[dict[str, Any]],
) -> None:
    settings = named(
        default,
        "ConfigMap",
        next(
            o["metadata"]["name"] for o in default if o["metadata"]["name"].startswith("berdl-hub-settings-")
        ),
    )["data"]
    assert puller_images(default) == {
        "pull-notebook": settings["BERDL_NOTEBOOK_IMAGE"],
        "pull-init": settings["BERDL_INIT_IMAGE"],
        "pause": "registry.k8s.io/pause:3.10",
    }
    spec = template(default, "DaemonSet", "image-puller")["spec"]
    for container in spec["initContainers"]:
        assert container["command"] == ["/bin/sh", "-c", "exit 0"]  # exits at once: only the pull counts
        assert container["imagePullPolicy"] == "IfNotPresent"
    assert spec["automountServiceAccountToken"] is False
    # No NetworkPolicy lets anyone reach it, none is needed: it listens on nothing.
    puller = pod("puller", "10.1.0.40", template(default, "DaemonSet", "image-puller"), "berdl")
    assert puller.ports == {}


IMAGES = {
    "BERDL_NOTEBOOK_IMAGE": "registry.example.org/berdl/berdl-notebook:2.0",
    "BERDL_INIT_IMAGE": "registry.example.org/berdl/berdl-init:2.0",
}


def test_the_image_puller_follows_the_images_hub_settings_env_sets(tmp_path: Path) -> None:
    """Step 3 of deploy/README.md: the images are set in hub-settings.env."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    settings = copy / "hub-settings.env"
    lines = [line for line in settings.read_text().splitlines() if line.split("=", 1)[0] not in IMAGES]
    settings.write_text("\n".join([*lines, *(f"{key}={value}" for key, value in IMAGES.items())]) + "\n")
    objects = render(copy)
    assert puller_images(objects)["pull-notebook"] == IMAGES["BERDL_NOTEBOOK_IMAGE"]
    assert puller_images(objects)["pull-init"] == IMAGES["BERDL_INIT_IMAGE"]


def test_an_overlay_that_sets_the_images_copies_the_replacements(tmp_path: Path) -> None:
    """An overlay's configMapGenerator merge comes after deploy/'s own replacements: the overlay repeats
    them (deploy/README.md, "Operating it"), and the puller follows; without them it would not."""
    generator = {
        "name": "berdl-hub-settings",
        "behavior": "merge",
        "literals": [f"{key}={value}" for key, value in IMAGES.items()],
    }
    replacements = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["replacements"]
    objects = render(overlay(tmp_path, configMapGenerator=[generator], replacements=replacements))
    assert puller_images(objects)["pull-notebook"] == IMAGES["BERDL_NOTEBOOK_IMAGE"]
    assert puller_images(objects)["pull-init"] == IMAGES["BERDL_INIT_IMAGE"]


def test_the_ingress_sends_every_path_of_its_host_to_the_proxy_with_tls(
    with_components: list[dict[str, Any]],
) -> None:
    ingress = named(with_components, "Ingress", "berdl-hub")
    (rule,) = ingress["spec"]["rules"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == [rule["host"]]
    assert tls["secretName"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    service = named(with_components, "Service", path["backend"]["service"]["name"])
    assert service["metadata"]["name"] == "proxy-public"
    assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    annotations = ingress["metadata"]["annotations"]
    # Idle websockets (kernels) live an hour, not ingress-nginx's 60 s; a notebook over 1 MiB saves.
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "256m"


# --- Prometheus and the hub's metrics -----------------------------------------------------------------

PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}
MONITORING = {"berdl.kbase.us/monitoring": "true"}


def test_a_labelled_monitoring_namespaces_prometheus_reaches_the_hub_and_nothing_else_does(
    default: list[dict[str, Any]],
) -> None:
    policies = [o for o in default if o["kind"] == "NetworkPolicy"]
    hub = pod("hub", "10.1.0.2", template(default, "Deployment", "hub"), "berdl")
    proxy = pod("proxy", "10.1.0.3", template(default, "Deployment", "proxy"), "berdl")
    alice = pod("alice", "10.1.0.10", spawner_pod("alice"), "berdl")
    prometheus = Peer("prometheus", "10.4.0.5", PROMETHEUS_LABELS, "monitoring", {}, MONITORING)
    elsewhere = Peer("prometheus elsewhere", "10.5.0.5", PROMETHEUS_LABELS, "team-a")
    neighbour = Peer(
        "grafana", "10.4.0.6", {"app.kubernetes.io/name": "grafana"}, "monitoring", {}, MONITORING
    )

    assert allowed(policies, prometheus, hub, 8081)
    assert not allowed(policies, elsewhere, hub, 8081)  # a namespace nobody labelled
    assert not allowed(policies, neighbour, hub, 8081)  # not the Prometheus pod
    assert not allowed(policies, prometheus, hub, 8080)  # the hub's port only
    assert not allowed(policies, prometheus, alice, 8888)  # not the users' servers
    assert not allowed(policies, prometheus, proxy, 8001)  # not the proxy's API
    # User pods reach the hub's port for its API, as before; /hub/metrics refuses their tokens
    # (tests/hub/test_hub_metrics.py: only a read:metrics token reads it).
    assert allowed(policies, alice, hub, 8081)


def test_the_scrape_job_finds_the_hubs_service_and_port_and_the_service_says_where(
    default: list[dict[str, Any]],
) -> None:
    """Debian's promtool cannot read kubernetes_sd_configs (its build leaves them out), so the job's
    discovery is checked against the rendered Service here; the rest of the job runs in tests/e2e."""
    (job,) = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    service = named(default, "Service", "hub")
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "endpoints"
    assert sd["namespaces"]["names"] == [service["metadata"]["namespace"]]
    keep = next(r for r in job["relabel_configs"] if r["action"] == "keep")
    (port,) = service["spec"]["ports"]
    assert keep["regex"] == f"{service['metadata']['name']};{port['name']}"
    annotations = service["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/path": job["metrics_path"],
        "prometheus.io/port": str(port["port"]),
    }
    assert job["authorization"]["type"] == "Bearer"
