"""deploy/: every manifest passes `kubernetes-validate --strict` against the oldest and the newest
Kubernetes it bundles, and the manifests agree with each other and with the hub's configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from berdl_hub.hub_secrets import DEFAULT_SECRETS_DIR
from berdl_hub.notebook_env import FORWARDED

from localhub.tools import REPO
from tests.conftest import require_tool
from tests.deploy.rendered import hub_settings

DEPLOY = REPO / "deploy"
EXAMPLE_SECRET = "secret.example.yaml"
SECRET_KEYS = {"JUPYTERHUB_COOKIE_SECRET", "JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN"}


def manifests() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def by_kind() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for path in manifests():
        document = yaml.safe_load(path.read_text())
        found.setdefault(document["kind"], []).append(document)
    return found


def bundled_versions() -> list[str]:
    from kubernetes_validate.utils import Version, all_versions

    versions = sorted(set(all_versions()), key=Version)
    return [versions[0], versions[-1]]


def kubernetes_validate() -> str:
    beside = Path(sys.executable).parent / "kubernetes-validate"
    return str(beside) if beside.exists() else require_tool("kubernetes-validate")


@pytest.mark.parametrize("version", bundled_versions())
def test_every_manifest_passes_strict_validation(version: str) -> None:
    paths = manifests()
    assert len(paths) >= 11
    result = subprocess.run(
        [kubernetes_validate(), "--strict", "--kubernetes-version", version, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(paths), result.stdout


def test_strict_validation_rejects_a_stray_field(tmp_path: Path) -> None:
    """The check above can fail: an unknown field in the hub Deployment is refused."""
    hub = load("hub-deployment.yaml")
    hub["spec"]["template"]["spec"]["containers"][0]["restartAlways"] = True
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(hub))
    result = subprocess.run(
        [kubernetes_validate(), "--strict", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    listed = load("kustomization.yaml")["resources"]
    files = [name for name in listed if not (DEPLOY / name).is_dir()]
    assert sorted(files) == sorted(p.name for p in manifests() if p.name != EXAMPLE_SECRET)
    # Folders of their own (a kustomization each), for what may live in another namespace.
    assert sorted(set(listed) - set(files)) == ["spark"]


def test_hub_is_one_replica_replaced_with_recreate_on_its_database_volume() -> None:
    hub = load("hub-deployment.yaml")
    assert hub["spec"]["replicas"] == 1
    assert hub["spec"]["strategy"] == {"type": "Recreate"}
    pod = hub["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == load("serviceaccount.yaml")["metadata"]["name"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [load("hub-db-pvc.yaml")["metadata"]["name"]]
    container = pod["containers"][0]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/srv/jupyterhub/data" in mounts  # where DEFAULT_DB_URL puts the SQLite file
    sources = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert sources == {"configMapRef": "berdl-hub-settings"}  # the secrets are files, not variables
    secrets = [
        v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "berdl-hub-secrets"
    ]
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[secrets[0]] == DEFAULT_SECRETS_DIR


def test_proxy_runs_apart_with_its_own_resources_and_the_shared_token() -> None:
    proxy = load("proxy-deployment.yaml")
    container = proxy["spec"]["template"]["spec"]["containers"][0]
    assert "configurable-http-proxy" in container["image"]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    token = next(e for e in container["env"] if e["name"] == "CONFIGPROXY_AUTH_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "berdl-hub-secrets",
        "key": "CONFIGPROXY_AUTH_TOKEN",
    }
    settings = hub_settings()
    assert settings["CONFIGPROXY_API_URL"] == "http://proxy-api:8001"
    assert "--api-port=8001" in container["command"]


def test_only_the_hub_reaches_the_proxy_api() -> None:
    policy = load("proxy-api-networkpolicy.yaml")["spec"]
    proxy_labels = load("proxy-deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    hub_labels = load("hub-deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"] == proxy_labels
    rules = {rule["ports"][0]["port"]: rule.get("from") for rule in policy["ingress"]}
    assert rules["http"] is None  # the public port: everyone
    assert rules["api"] == [{"podSelector": {"matchLabels": hub_labels}}]
    api_service = load("proxy-api-service.yaml")["spec"]
    assert api_service["ports"][0]["targetPort"] == "api"


def test_the_role_is_bound_to_the_hubs_service_account() -> None:
    """What the Role grants is what the spawner calls: tests/deploy/test_role.py records the calls."""
    binding = load("rolebinding.yaml")
    assert binding["roleRef"]["name"] == load("role.yaml")["metadata"]["name"]
    assert binding["subjects"][0]["name"] == load("serviceaccount.yaml")["metadata"]["name"]


def test_the_example_secret_names_the_keys_and_holds_no_value() -> None:
    secret = load(EXAMPLE_SECRET)
    assert secret["metadata"]["name"] == "berdl-hub-secrets"
    assert set(secret["stringData"]) == SECRET_KEYS
    assert set(secret["stringData"].values()) == {""}
    assert "openssl rand -hex 32" in (DEPLOY / EXAMPLE_SECRET).read_text()


def test_hub_settings_are_variables_the_hub_reads() -> None:
    """A typo in the ConfigMap would be silently ignored: every key must be read by the hub config."""
    source = (REPO / "hub" / "berdl_hub" / "hub_config.py").read_text()
    settings = hub_settings()
    # The rest are the notebook's: the spawner forwards them to user pods (hub_env_to_forward's default).
    assert [key for key in settings if f'"{key}"' not in source and key not in FORWARDED] == []
    # KBase login, whose Auth2 service (ci, appdev or production) the operator names: the hub refuses to
    # start until then.
    assert settings["JUPYTERHUB_AUTHENTICATOR_CLASS"] == "kbase"
    assert settings["KBASE_AUTH_URL"] == ""
    assert settings["BERDL_HUB_PUBLIC_URL"] == ""  # where users reach the hub: the operator's to say
