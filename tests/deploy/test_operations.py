"""deploy/ as `kubectl kustomize` renders it: a change of the hub's settings rolls the hub, the settings
tree reaches the hub where BERDL_HUB_CONFIG_TREE says, and the probes keep the only hub and the only
proxy in service through slow moments (the reasons are in the manifests and deploy/README.md)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from berdl_hub import config_tree
from berdl_hub.proxy import BERDLProxy
from traitlets.config import Config

from tests.deploy.rendered import DEPLOY, find, render
from tests.images.test_deploy import bundled_versions, kubernetes_validate


def pod_template(documents: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return find(documents, "Deployment", name)["spec"]["template"]


def container(documents: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = pod_template(documents, name)["spec"]["containers"]
    return found


def tolerated_seconds(probe: dict[str, Any]) -> int:
    """How long a container may go unanswered before the probe acts on it."""
    return probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe["failureThreshold"]


def test_what_kustomize_renders_passes_strict_validation(tmp_path: Path) -> None:
    documents = render()
    paths = []
    for number, document in enumerate(documents):
        paths.append(tmp_path / f"{number}-{document['kind']}.yaml")
        paths[-1].write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [kubernetes_validate(), "--strict", "--kubernetes-version", bundled_versions()[-1], *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {d["kind"] for d in documents} >= {"ConfigMap", "Deployment", "Service"}


def changed_copy(tmp_path: Path, relative: str, old: str, new: str) -> list[dict[str, Any]]:
    """deploy/ rendered after one edit of one of its files."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    text = (copy / relative).read_text()
    assert old in text
    (copy / relative).write_text(text.replace(old, new))
    return render(copy)


def test_a_settings_change_rolls_the_hub_and_only_the_hub(tmp_path: Path) -> None:
    before = render()
    after = changed_copy(tmp_path, "hub-settings.env", "BERDL_IDLE_TIMEOUT=3600", "BERDL_IDLE_TIMEOUT=7200")
    assert find(after, "ConfigMap", "berdl-hub-settings")["data"]["BERDL_IDLE_TIMEOUT"] == "7200"
    assert pod_template(after, "hub") != pod_template(before, "hub")  # a new pod template: a rollout
    assert pod_template(after, "proxy") == pod_template(before, "proxy")  # the proxy keeps its routes
    name = find(after, "ConfigMap", "berdl-hub-settings")["metadata"]["name"]
    assert {"configMapRef": {"name": name}} in container(after, "hub")["envFrom"]


def test_a_change_of_the_settings_tree_rolls_the_hub(tmp_path: Path) -> None:
    before = render()
    after = changed_copy(
        tmp_path, "config/hub-config.yaml", "\n  profile_list:\n", "\n  start_timeout: 600\n  profile_list:\n"
    )
    assert pod_template(after, "hub") != pod_template(before, "hub")
    assert pod_template(after, "proxy") == pod_template(before, "proxy")


def test_the_settings_tree_is_mounted_where_the_hub_reads_it() -> None:
    documents = render()
    hub = container(documents, "hub")
    (path,) = [e["value"] for e in hub["env"] if e["name"] == "BERDL_HUB_CONFIG_TREE"]
    folder, file_name = path.rsplit("/", 1)
    (mount,) = [m for m in hub["volumeMounts"] if m["mountPath"] == folder]
    (volume,) = [v for v in pod_template(documents, "hub")["spec"]["volumes"] if v["name"] == mount["name"]]
    generated = find(documents, "ConfigMap", "berdl-hub-config")
    assert volume["configMap"]["name"] == generated["metadata"]["name"]
    tree = yaml.safe_load(generated["data"][file_name])
    # Shipped with BERDL's two profiles only: every other traitlet at the built-in configuration's value.
    assert list(tree) == ["BERDLSpawner"]
    assert list(tree["BERDLSpawner"]) == ["profile_list"]
    shipped = config_tree.read(str(DEPLOY / "config" / "hub-config.yaml"))
    assert shipped == Config(tree)
    assert [p["slug"] for p in shipped.BERDLSpawner.profile_list] == ["medium", "large"]


def test_the_hub_is_never_unready_and_restarted_only_when_long_dead() -> None:
    hub = container(render(), "hub")
    startup, ready, live = hub["startupProbe"], hub["readinessProbe"], hub["livenessProbe"]
    assert {p["httpGet"]["path"] for p in (startup, ready, live)} == {"/hub/health"}
    # The first start after an upgrade migrates the database and may wait for the proxy: liveness
    # starts only after the startup probe passed, which allows 10 minutes, well past that wait.
    assert tolerated_seconds(startup) >= 600 > BERDLProxy.connect_timeout.default_value
    assert "initialDelaySeconds" not in live
    assert ready["failureThreshold"] >= 1000  # the only hub stays in its Service
    assert tolerated_seconds(live) >= 300
    assert all(p["timeoutSeconds"] >= 3 for p in (startup, ready, live))


def test_the_proxy_is_never_unready_and_restarted_only_when_long_dead() -> None:
    proxy = container(render(), "proxy")
    ready, live = proxy["readinessProbe"], proxy["livenessProbe"]
    assert ready["failureThreshold"] >= 1000  # the only proxy stays behind proxy-public
    assert ready["periodSeconds"] <= 2
    assert tolerated_seconds(live) >= 300
    assert all(p["timeoutSeconds"] >= 3 for p in (ready, live))
    limit = proxy["resources"]["limits"]["memory"]
    assert limit.endswith("Gi"), limit
    assert int(limit[:-2]) >= 1, limit  # an out-of-memory kill cuts every user off
