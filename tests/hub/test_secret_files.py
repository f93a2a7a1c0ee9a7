"""The hub's secrets as files (the mounted Secret), the environment as the fallback.

A real JupyterHub, with a real configurable-http-proxy and PostgreSQL, reads its cookie secret, crypt
key, proxy token and database password from files; then neither its own `/proc/<pid>/environ` nor
the idle culler's holds any of them, and the hub works: a login and the stored auth state survive.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from berdl_hub import hub_config, hub_secrets
from traitlets.config import Config

from localhub.procs import children
from tests.hub.hubtest_support import assert_no_secret_in
from tests.hub.test_hub import (  # noqa: F401  (hub_stack and postgres are fixtures)
    ALICE_KBASE_TOKEN,
    COOKIE_SECRET,
    CRYPT_KEY,
    GOOD,
    PG_PASSWORD,
    PROXY_TOKEN,
    REPO,
    SECRETS,
    HubStack,
    Postgres,
    hub_stack,
    is_logged_in,
    log_in,
    postgres,
    stored_auth_state,
    wait_for_log,
)

HUB_SECRETS = {
    "JUPYTERHUB_COOKIE_SECRET": COOKIE_SECRET,
    "JUPYTERHUB_CRYPT_KEY": CRYPT_KEY,
    "CONFIGPROXY_AUTH_TOKEN": PROXY_TOKEN,
    "PGPASSWORD": PG_PASSWORD,
}


def write_secret_files(folder: Path, values: dict[str, str]) -> Path:
    """The Secret as the kubelet mounts it: one file per key, readable by the hub's user only."""
    folder.mkdir()
    for name, value in values.items():
        (folder / name).write_text(value + "\n")  # as `kubectl create secret --from-file` of an edited file
        (folder / name).chmod(0o400)
    return folder


def settings_without_secrets() -> dict[str, str]:
    return {k: v for k, v in GOOD.items() if k not in hub_secrets.SECRET_NAMES}


def test_files_win_over_the_environment_and_the_environment_fills_in(tmp_path: Path) -> None:
    folder = write_secret_files(tmp_path / "secrets", {"JUPYTERHUB_COOKIE_SECRET": COOKIE_SECRET})
    other_cookie = "ab" * 32
    env = {
        **GOOD,
        "JUPYTERHUB_COOKIE_SECRET": other_cookie,
        hub_secrets.SECRETS_DIR_VARIABLE: str(folder),
    }
    settings = hub_config.load(env)
    assert settings.cookie_secret == bytes.fromhex(COOKIE_SECRET)  # the file, its newline dropped
    assert settings.crypt_keys == (bytes.fromhex(CRYPT_KEY),)  # no file: the environment
    assert settings.proxy_auth_token == PROXY_TOKEN
    assert settings.db_password == PG_PASSWORD


def test_every_secret_from_files_alone_configures_the_hub(tmp_path: Path) -> None:
    folder = write_secret_files(tmp_path / "secrets", HUB_SECRETS)
    settings = hub_config.load({**settings_without_secrets(), hub_secrets.SECRETS_DIR_VARIABLE: str(folder)})
    c = Config()
    hub_config.apply(c, settings, {})
    assert c.JupyterHub.cookie_secret == bytes.fromhex(COOKIE_SECRET)
    assert c.CryptKeeper["keys"] == [bytes.fromhex(CRYPT_KEY)]
    assert c.ConfigurableHTTPProxy.auth_token == PROXY_TOKEN
    # The password joins the URL in memory (JupyterHub's alembic takes nothing else), not the environment.
    assert c.JupyterHub.db_url == f"postgresql://jupyterhub:{PG_PASSWORD}@db:5432/jupyterhub"
    assert_no_secret_in(repr(settings), list(HUB_SECRETS.values()))


def test_without_files_or_variables_each_secret_is_missing(tmp_path: Path) -> None:
    env = {**settings_without_secrets(), hub_secrets.SECRETS_DIR_VARIABLE: str(tmp_path / "none")}
    with pytest.raises(hub_config.HubConfigError) as raised:
        hub_config.load(env)
    problems = "\n".join(raised.value.problems)
    for name in hub_secrets.SECRET_NAMES:
        assert f"{name} is required" in problems


def test_an_unreadable_secret_file_is_named_without_its_value(tmp_path: Path) -> None:
    folder = write_secret_files(tmp_path / "secrets", {"JUPYTERHUB_CRYPT_KEY": CRYPT_KEY})
    (folder / "CONFIGPROXY_AUTH_TOKEN").mkdir()  # unreadable as a file, even for root
    env = {**GOOD, hub_secrets.SECRETS_DIR_VARIABLE: str(folder)}
    with pytest.raises(hub_config.HubConfigError) as raised:
        hub_config.load(env)
    assert raised.value.problems == [
        f"CONFIGPROXY_AUTH_TOKEN: cannot read {folder / 'CONFIGPROXY_AUTH_TOKEN'}: Is a directory"
    ]
    assert_no_secret_in(str(raised.value), list(HUB_SECRETS.values()))


def test_forget_secrets_drops_all_four_from_os_environ() -> None:
    environ = {**GOOD, "PATH": "/usr/bin"}
    hub_config.forget_secrets(environ)
    assert environ == {k: v for k, v in GOOD.items() if k not in HUB_SECRETS} | {"PATH": "/usr/bin"}


def process_environment(pid: int) -> str:
    """What `/proc/<pid>/environ` shows another process of the same user."""
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").replace("\0", "\n")


@pytest.mark.slow
def test_a_hub_with_secret_files_keeps_them_out_of_every_process_environment(
    hub_stack: HubStack,  # noqa: F811
    postgres: Postgres,  # noqa: F811
) -> None:
    for name in HUB_SECRETS:
        hub_stack.env.pop(name, None)
    folder = write_secret_files(hub_stack.tmp / "hub-secrets", HUB_SECRETS)
    hub_stack.env.update(JUPYTERHUB_DB_URL=postgres.url, BERDL_HUB_SECRETS_DIR=str(folder))

    hub = hub_stack.start_hub()
    wait_for_log(hub, "200 GET /hub/api/users?state=[secret] (jupyterhub-idle-culler@")
    cullers = [pid for pid, command in children(hub.popen.pid).items() if "jupyterhub_idle_culler" in command]
    assert len(cullers) == 1, children(hub.popen.pid)
    environments = {"hub": process_environment(hub.popen.pid), "culler": process_environment(cullers[0])}
    assert "JUPYTERHUB_API_TOKEN=" in environments["culler"]  # the culler's own environment, read
    assert f"BERDL_HUB_SECRETS_DIR={folder}" in environments["hub"]
    for who, environment in environments.items():
        assert_no_secret_in(environment, list(HUB_SECRETS.values()))
        assert [name for name in HUB_SECRETS if f"{name}=" in environment] == [], who

    # The values from the files are in effect: the proxy took the token, PostgreSQL the password, and a
    # session and its auth state outlive a restart (the cookie secret and the crypt key).
    with httpx.Client(follow_redirects=False) as browser:
        log_in(browser, hub_stack.public_url, "alice")
        hub_stack.stop_hub()
        hub_stack.start_hub()
        assert is_logged_in(browser, hub_stack.public_url)
        assert stored_kbase_token(hub_stack.public_url) == ALICE_KBASE_TOKEN
    hub_stack.stop_hub()
    assert_no_secret_in(hub_stack.logs(), SECRETS)
    assert os.stat(folder / "PGPASSWORD").st_mode & 0o777 == 0o400  # read, never rewritten


def test_a_database_password_with_url_characters_survives_the_url() -> None:
    from sqlalchemy.engine import make_url

    password = "p@ss:w/rd%;?#"
    settings = hub_config.load({**GOOD, "PGPASSWORD": password})
    c = Config()
    hub_config.apply(c, settings, {})
    url = make_url(c.JupyterHub.db_url)
    assert (url.password, url.username, url.host, url.database) == (
        password,
        "jupyterhub",
        "db",
        "jupyterhub",
    )


def stored_kbase_token(base: str) -> str | None:
    """alice's KBase token as the hub decrypts it from its database (None: nothing could be read)."""
    state = stored_auth_state(base, "alice")
    return state["kbase_token"] if state else None


def rotate(folder: Path, key: str) -> None:
    """Rotate one key the documented way (scripts/make-hub-secret --rotate), on the mounted files."""
    current = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "berdl-hub-secrets"},
        "data": {
            p.name: base64.b64encode(p.read_bytes().removesuffix(b"\n")).decode() for p in folder.iterdir()
        },
    }
    script = REPO / "scripts" / "make-hub-secret"
    result = subprocess.run(
        [sys.executable, str(script), "--rotate", key],
        input=json.dumps(current),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (folder / key).chmod(0o600)
    (folder / key).write_bytes(base64.b64decode(json.loads(result.stdout)["data"][key]))


@pytest.mark.slow
def test_rotations_as_documented_keep_auth_state_and_log_users_out_of_a_new_cookie_secret(
    hub_stack: HubStack,  # noqa: F811
) -> None:
    for name in HUB_SECRETS:
        hub_stack.env.pop(name, None)
    values = {k: v for k, v in HUB_SECRETS.items() if k != "PGPASSWORD"}
    folder = write_secret_files(hub_stack.tmp / "hub-secrets", values)
    data = hub_stack.tmp / "data"
    data.mkdir()
    hub_stack.env.update(
        JUPYTERHUB_DB_URL=f"sqlite:///{data}/jupyterhub.sqlite", BERDL_HUB_SECRETS_DIR=str(folder)
    )
    base = hub_stack.public_url
    with httpx.Client(follow_redirects=False) as browser:
        hub_stack.start_hub()
        log_in(browser, base, "alice")
        hub_stack.stop_hub()

        # A new crypt key goes first, the old one stays after it: what was stored still decrypts.
        rotate(folder, "JUPYTERHUB_CRYPT_KEY")
        new_key, old_key = (folder / "JUPYTERHUB_CRYPT_KEY").read_text().split(";")
        assert old_key == CRYPT_KEY
        hub_stack.start_hub()
        assert is_logged_in(browser, base)
        assert stored_kbase_token(base) == ALICE_KBASE_TOKEN
        with httpx.Client(follow_redirects=False) as laptop:  # the next login writes it with the new key
            log_in(laptop, base, "alice")
        hub_stack.stop_hub()

        (folder / "JUPYTERHUB_CRYPT_KEY").write_text(new_key)  # the old key dropped: nothing needs it now
        hub_stack.start_hub()
        assert stored_kbase_token(base) == ALICE_KBASE_TOKEN
        hub_stack.stop_hub()

        # A new cookie secret logs every user out; their stored auth state stays.
        rotate(folder, "JUPYTERHUB_COOKIE_SECRET")
        hub_stack.start_hub()
        assert not is_logged_in(browser, base)
        assert stored_kbase_token(base) == ALICE_KBASE_TOKEN
        hub_stack.stop_hub()
    assert_no_secret_in(hub_stack.logs(), [*SECRETS, new_key])
