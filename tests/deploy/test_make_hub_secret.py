"""scripts/make-hub-secret: a Secret the hub accepts, from the random source, only through pipes;
rotations that keep what must stay; bad input refused with one line and status 2."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from berdl_hub import hub_config

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
