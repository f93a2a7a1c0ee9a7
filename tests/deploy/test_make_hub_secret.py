"""scripts/make-hub-secret: a Secret the hub accepts, from the random source, only through pipes;
rotations that keep what must stay; bad input refused with one line and status 2."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from berdl_hub import hub_config

from localhub.standins.kube import api_server_in_thread, kube_config
from tests.conftest import require_tool
from tests.deploy.rendered import REPO
from tests.images.test_deploy import kubernetes_validate

SCRIPT = REPO / "scripts" / "make-hub-secret"
GENERATED = ("JUPYTERHUB_COOKIE_SECRET", "JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN")


def run(*arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], input=stdin, capture_output=True, text=True, check=False
    )


def made(*arguments: str, stdin: str = "") -> dict[str, Any]:
    result = run(*arguments, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def values(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def hub_settings(secret: dict[str, Any], **extra: str) -> hub_config.HubSettings:
    env = {
        **values(secret),
        "CONFIGPROXY_API_URL": "http://proxy-api:8001",
        "JUPYTERHUB_AUTHENTICATOR_CLASS": "kbase",
        "KBASE_AUTH_URL": "https://kbase.us/services/auth/",
        "KBASE_APPROVED_ROLES": "BERDL_USER",
        "BERDL_HUB_PUBLIC_URL": "https://hub.berdl.kbase.us/",
        "JUPYTERHUB_DB_URL": "postgresql://jupyterhub@db/jupyterhub"
        if "PGPASSWORD" in secret["data"]
        else "",
        "BERDL_HUB_SECRETS_DIR": "/nonexistent",
        **extra,
    }
    if not env["JUPYTERHUB_DB_URL"]:
        env.update(JUPYTERHUB_DB_URL="sqlite://", BERDL_HUB_DEV_MODE="1")
    return hub_config.load(env)


def test_a_new_secret_is_random_accepted_by_the_hub_and_valid(tmp_path: Path) -> None:
    first, second = made(), made()
    assert first["metadata"]["name"] == "berdl-hub-secrets"
    assert set(first["data"]) == set(GENERATED)
    settings = hub_settings(first)
    assert settings.cookie_secret == bytes.fromhex(values(first)["JUPYTERHUB_COOKIE_SECRET"])
    assert len(settings.crypt_keys) == 1
    # Fresh values at every run, and no two keys alike.
    assert not set(values(first).values()) & set(values(second).values())
    assert len(set(values(first).values())) == 3
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(first))
    result = subprocess.run(
        [kubernetes_validate(), "--strict", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "namespace" not in first["metadata"]  # kubectl -n NAMESPACE create -f - chooses it


def test_the_database_password_comes_from_a_file(tmp_path: Path) -> None:
    password_file = tmp_path / "db-password.txt"
    password_file.write_text("pg secret with spaces;\n")
    secret = made("--pgpassword-file", str(password_file))
    assert values(secret)["PGPASSWORD"] == "pg secret with spaces;"
    assert hub_settings(secret).db_password == "pg secret with spaces;"


def test_rotating_the_crypt_key_keeps_the_old_one_second() -> None:
    current = made()
    current["metadata"]["resourceVersion"] = "41"  # kubectl replace then refuses a Secret changed meanwhile
    secret = made("--rotate", "JUPYTERHUB_CRYPT_KEY", stdin=json.dumps(current))
    old, new = values(current), values(secret)
    assert new["JUPYTERHUB_CRYPT_KEY"].endswith(";" + old["JUPYTERHUB_CRYPT_KEY"])
    keys = hub_settings(secret).crypt_keys
    assert keys[1] == bytes.fromhex(old["JUPYTERHUB_CRYPT_KEY"])
    assert keys[0] != keys[1]
    assert {k: v for k, v in new.items() if k != "JUPYTERHUB_CRYPT_KEY"} == {
        k: v for k, v in old.items() if k != "JUPYTERHUB_CRYPT_KEY"
    }
    assert secret["metadata"] == current["metadata"]


@pytest.mark.parametrize("key", ["CONFIGPROXY_AUTH_TOKEN", "JUPYTERHUB_COOKIE_SECRET"])
def test_rotating_a_token_replaces_only_it(key: str) -> None:
    current = made()
    old, new = values(current), values(made("--rotate", key, stdin=json.dumps(current)))
    assert new[key] != old[key]
    assert {k: v for k, v in new.items() if k != key} == {k: v for k, v in old.items() if k != key}


@pytest.mark.parametrize(
    ("arguments", "stdin", "message"),
    [
        (["--rotate", "JUPYTERHUB_CRYPT_KEY"], "not json", "standard input is not a Secret as JSON"),
        (["--rotate", "JUPYTERHUB_CRYPT_KEY"], '{"kind": "ConfigMap", "data": {}}', "is not a Secret"),
        (["--rotate", "CONFIGPROXY_AUTH_TOKEN"], '{"kind": "Secret", "data": {}}', "no readable CONFIGPROXY"),
        (["--rotate", "PGPASSWORD"], '{"kind": "Secret", "data": {}}', "takes --pgpassword-file"),
        (["--pgpassword-file", "/nonexistent/pw"], "", "cannot read /nonexistent/pw"),
    ],
)
def test_bad_input_is_one_line_and_status_2(arguments: list[str], stdin: str, message: str) -> None:
    result = run(*arguments, stdin=stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_it_never_writes_the_values_to_a_terminal() -> None:
    leader, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, str(SCRIPT)], stdout=terminal, stderr=subprocess.PIPE, text=True, check=False
        )
        os.set_blocking(leader, False)
        try:
            shown = os.read(leader, 65536)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(leader)
        os.close(terminal)
    assert result.returncode == 2
    assert "standard output is a terminal" in result.stderr
    assert shown == b""


# --- a Secret that was applied: rotation leaves no old value behind ---------------------------------------


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """kubectl against the Kubernetes API stand-in (which stores a Secret as an API server does)."""
    kubectl = require_tool("kubectl")
    with api_server_in_thread("secrets") as (url, _api):
        config = tmp_path / "kubeconfig"
        config.write_text(kube_config(url))

        def run_kubectl(*arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            result = subprocess.run(
                [kubectl, "--kubeconfig", str(config), *arguments],
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            return result

        yield run_kubectl


def applied_secret(kube: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> dict[str, Any]:
    """A Secret made the way an operator might have made it: `kubectl apply` of a file with the values,
    which leaves them, in plain text, in the last-applied-configuration annotation."""
    secret = made()
    manifest = tmp_path / "secret.json"
    manifest.write_text(json.dumps({**secret, "data": {}, "stringData": values(secret)}))
    kube("apply", "--validate=false", "-f", str(manifest))
    return read_back(kube)


def read_back(kube: Callable[..., subprocess.CompletedProcess[str]]) -> dict[str, Any]:
    shown = kube("get", "secret", "berdl-hub-secrets", "-o", "json", "--show-managed-fields")
    return json.loads(shown.stdout)


def anywhere(secret: dict[str, Any], value: str) -> bool:
    """Whether `value`, in plain text or in base64, appears anywhere in the object's JSON."""
    text = json.dumps(secret)
    return value in text or encode(value) in text or value in json.dumps(json.loads(text))


def encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


@pytest.mark.parametrize("key", GENERATED)
def test_a_rotation_of_an_applied_secret_leaves_no_old_value_anywhere(
    key: str, kube: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    current = applied_secret(kube, tmp_path)
    old = values(current)[key]
    assert "kubectl.kubernetes.io/last-applied-configuration" in current["metadata"]["annotations"]
    assert anywhere(current, old)  # as kubectl left it: the old value in the annotation too
    assert current["metadata"]["managedFields"]

    rotated = made("--rotate", key, stdin=json.dumps(current))
    assert "annotations" not in rotated["metadata"]
    assert "managedFields" not in rotated["metadata"]
    if key == "JUPYTERHUB_CRYPT_KEY":
        # The old crypt key stays, on purpose, in data: it still decrypts. Nowhere else.
        assert values(rotated)[key].endswith(";" + old)
        rest = {**rotated, "data": {k: v for k, v in rotated["data"].items() if k != key}}
        assert not anywhere(rest, old)
    else:
        assert not anywhere(rotated, old)

    kube("replace", "--validate=false", "-f", "-", stdin=json.dumps(rotated))
    stored = read_back(kube)
    assert values(stored) == values(rotated)
    assert "annotations" not in stored["metadata"]
    if key != "JUPYTERHUB_CRYPT_KEY":
        assert not anywhere(stored, old)


def test_old_crypt_keys_are_dropped_and_the_newest_two_kept(
    kube: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    current = applied_secret(kube, tmp_path)
    for _ in range(3):
        rotated = made("--rotate", "JUPYTERHUB_CRYPT_KEY", stdin=json.dumps(current))
        kube("replace", "--validate=false", "-f", "-", stdin=json.dumps(rotated))
        current = read_back(kube)
    keys = values(current)["JUPYTERHUB_CRYPT_KEY"].split(";")
    assert len(keys) == 4

    pruned = made("--drop-old-crypt-keys", stdin=json.dumps(current))
    assert values(pruned)["JUPYTERHUB_CRYPT_KEY"].split(";") == keys[:2]
    for dropped in keys[2:]:
        assert not anywhere(pruned, dropped)
    assert len(hub_settings(pruned).crypt_keys) == 2
    kube("replace", "--validate=false", "-f", "-", stdin=json.dumps(pruned))
    stored = read_back(kube)
    assert values(stored)["JUPYTERHUB_CRYPT_KEY"].split(";") == keys[:2]
    # Nothing else changed.
    others = {k: v for k, v in values(stored).items() if k != "JUPYTERHUB_CRYPT_KEY"}
    assert others == {k: v for k, v in values(current).items() if k != "JUPYTERHUB_CRYPT_KEY"}
    # Dropping again changes nothing: two keys are the least it keeps.
    again = made("--drop-old-crypt-keys", stdin=json.dumps(stored))
    assert values(again) == values(stored)
