"""A real JupyterHub with hub/jupyterhub_config.py, a separate real configurable-http-proxy and a real
PostgreSQL (or SQLite on a folder), logging users in with the `kbase` authenticator against the KBase
Auth2 stand-in: logins and stored auth state survive a hub restart, and the hub refuses to start on a
broken environment. All logs are scanned for every secret the tests use."""

from __future__ import annotations

import html
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from berdl_hub import hub_config

from localhub.procs import (
    Postgres,
    Process,
    base_env,
    free_port,
    postgres_server,
    proxy_command,
    start,
    wait_for,
)
from localhub.standins.kbase_auth2 import APPROVED_ROLE, kbase_env
from localhub.standins.kube import kube_config
from localhub.tools import REPO
from tests.hub.hubtest_kbase import ADA_KBASE_TOKEN, ALICE_KBASE_TOKEN
from tests.hub.hubtest_support import assert_no_secret_in

pytestmark = pytest.mark.slow
CONFIG = REPO / "hub" / "jupyterhub_config.py"

COOKIE_SECRET = secrets.token_hex(32)
CRYPT_KEY = secrets.token_hex(32)
PROXY_TOKEN = secrets.token_hex(32)
PG_PASSWORD = "pg-" + secrets.token_hex(12)
ADMIN_TOKEN = "admin-" + secrets.token_hex(16)
# The KBase users (alice, and ada an admin) are in hubtest_kbase's Auth2 stand-in.
SECRETS = [
    COOKIE_SECRET,
    CRYPT_KEY,
    PROXY_TOKEN,
    PG_PASSWORD,
    ADMIN_TOKEN,
    ALICE_KBASE_TOKEN,
    ADA_KBASE_TOKEN,
]

# The operator's extra config of these tests: give the test a service token that may read stored auth
# state. No allow_all: the approved roles are what lets users in.
EXTRA_CONFIG = """
import os
name, token = "berdl-test-admin", os.environ["BERDL_TEST_ADMIN_TOKEN"]
c.JupyterHub.services.append({"name": name, "api_token": token})
scopes = ["read:users", "admin:auth_state"]
c.JupyterHub.load_roles.append({"name": name, "scopes": scopes, "services": [name]})
"""


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_server(PG_PASSWORD) as server:
        yield server


@dataclass
class HubStack:
    """A proxy that stays up, and a hub that can be started and stopped beside it."""

    tmp: Path
    env: dict[str, str]
    proxy: Process
    public_url: str
    hub_port: int
    hubs: list[Process] = field(default_factory=list)

    def start_hub(self) -> Process:
        log = self.tmp / f"hub-{len(self.hubs)}.log"
        cmd = [
            sys.executable,
            "-m",
            "jupyterhub",
            "-f",
            str(REPO / "hub" / "jupyterhub_config.py"),
            "--debug",
        ]
        hub = start("jupyterhub", cmd, self.env, log, cwd=self.tmp / "hub-cwd")
        self.hubs.append(hub)
        wait_for(f"http://127.0.0.1:{self.hub_port}/hub/health", 60, hub)
        wait_for_log(hub, "JupyterHub is now running")  # from then on, SIGTERM stops it cleanly
        return hub

    def stop_hub(self) -> None:
        assert self.hubs[-1].stop() == 0, self.hubs[-1].log()

    def logs(self) -> str:
        return self.proxy.log() + "".join(hub.log() for hub in self.hubs)


def hub_env(
    tmp: Path,
    hub_port: int,
    proxy_api_port: int,
    auth2_url: str = "http://127.0.0.1:9",
    public_url: str = "http://127.0.0.1:9/",
) -> dict[str, str]:
    (tmp / "hub-cwd").mkdir()
    (tmp / "kubeconfig").write_text(kube_config())
    (tmp / "extra_config.py").write_text(EXTRA_CONFIG)
    return {
        **base_env(),
        "KUBECONFIG": str(tmp / "kubeconfig"),
        "JUPYTERHUB_COOKIE_SECRET": COOKIE_SECRET,
        "JUPYTERHUB_CRYPT_KEY": CRYPT_KEY,
        "CONFIGPROXY_API_URL": f"http://127.0.0.1:{proxy_api_port}",
        "CONFIGPROXY_AUTH_TOKEN": PROXY_TOKEN,
        **kbase_env(auth2_url),
        "BERDL_HUB_PUBLIC_URL": public_url,  # where users reach the hub: the proxy
        "BERDL_HUB_BIND_URL": f"http://127.0.0.1:{hub_port}",
        "BERDL_HUB_EXTRA_CONFIG": str(tmp / "extra_config.py"),
        "BERDL_INIT_IMAGE": "ghcr.io/kbase/berdl-init:1.0",
        "BERDL_TEST_ADMIN_TOKEN": ADMIN_TOKEN,
    }


@pytest.fixture
def hub_stack(tmp_path: Path, auth2_url: str) -> Iterator[HubStack]:
    hub_port, proxy_port, proxy_api_port = free_port(), free_port(), free_port()
    env = hub_env(tmp_path, hub_port, proxy_api_port, auth2_url, f"http://127.0.0.1:{proxy_port}/")
    proxy_env = {**base_env(), "CONFIGPROXY_AUTH_TOKEN": PROXY_TOKEN}
    cmd = proxy_command(proxy_port, proxy_api_port, f"http://127.0.0.1:{hub_port}")
    proxy = start("configurable-http-proxy", cmd, proxy_env, tmp_path / "proxy.log")
    stack = HubStack(tmp_path, env, proxy, f"http://127.0.0.1:{proxy_port}", hub_port)
    try:
        wait_for(f"http://127.0.0.1:{proxy_api_port}/api/routes", 30, proxy)
        yield stack
    finally:
        for hub in stack.hubs:
            hub.stop()
        stack.proxy.stop()  # a test may have replaced the first proxy with a restarted one


FROM_KBASE = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate"}


def log_in(client: httpx.Client, base: str, user: str) -> None:
    """As a person does: the hub's login page links to KBase's, whose cookie brings the user back."""
    page = client.get(f"{base}/hub/login")
    assert page.status_code == 200
    link = re.search(r"href='([^']+)'>Sign in with KBase", page.text)
    assert link, "no link to KBase's login page"
    kbase_login = httpx.URL(html.unescape(link.group(1)))
    assert client.get(kbase_login).status_code == 200
    form = {"user": user, "redirect": kbase_login.params["redirect"]}
    back = client.post(kbase_login.copy_with(query=None), data=form)
    assert back.status_code == 303
    # What a browser says of the navigation KBase's page redirected (the hub logs in from the cookie only
    # on a navigation started on its site or KBase's).
    answer = client.get(back.headers["location"], headers=FROM_KBASE)
    assert answer.status_code == 302, answer.text[:500]


def is_logged_in(client: httpx.Client, base: str) -> bool:
    answer = client.get(f"{base}/hub/home")
    if answer.status_code == 302:
        assert "/hub/login" in answer.headers["location"]
        return False
    assert answer.status_code == 200, answer.text[:500]
    return True


def stored_user(base: str, user: str) -> dict[str, Any]:
    answer = httpx.get(f"{base}/hub/api/users/{user}", headers={"Authorization": f"token {ADMIN_TOKEN}"})
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()


def stored_auth_state(base: str, user: str) -> dict[str, Any] | None:
    return stored_user(base, user)["auth_state"]


def wait_for_log(process: Process, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log():
        assert time.monotonic() < deadline, f"{text!r} not logged in {timeout} s"
        time.sleep(0.1)


def restart_keeps_login_and_auth_state(stack: HubStack) -> None:
    base = stack.public_url
    hub = stack.start_hub()
    # The idle culler's first round: its narrow scopes are enough to list users and their servers.
    wait_for_log(hub, "200 GET /hub/api/users?state=[secret] (jupyterhub-idle-culler@")
    with httpx.Client(follow_redirects=False) as browser:
        assert not is_logged_in(browser, base)
        log_in(browser, base, "alice")
        assert is_logged_in(browser, base)
        assert stored_user(base, "alice")["admin"] is False
        state = stored_auth_state(base, "alice")
        assert state is not None
        assert (state["kbase_token"], state["roles"], state["mfa"]) == (
            ALICE_KBASE_TOKEN,
            [APPROVED_ROLE],
            "Used",
        )

        stack.stop_hub()
        stack.start_hub()

        assert is_logged_in(browser, base)  # the same cookie, after the restart
        # The same login (its check after the restart renews only when it was made, `checked_at`).
        after = stored_auth_state(base, "alice")
        assert after is not None
        assert after.pop("checked_at") >= state.pop("checked_at")
        assert after == state
    with httpx.Client(follow_redirects=False) as admin:
        log_in(admin, base, "ada")
        assert stored_user(base, "ada")["admin"] is True
    with httpx.Client(follow_redirects=False) as stranger:
        assert not is_logged_in(stranger, base)
    stack.stop_hub()

    # No random cookie_secret file: the secret comes from the environment only.
    assert list((stack.tmp / "hub-cwd").iterdir()) == []
    logs = stack.logs()
    assert "Using Spawner: berdl_hub.spawner.BERDLSpawner" in logs  # the "berdl" entry point
    assert not re.search(r" 403 .*jupyterhub-idle-culler@", logs)
    assert_no_secret_in(logs, SECRETS)


def test_postgres_hub_restart_keeps_sessions_and_auth_state(hub_stack: HubStack, postgres: Postgres) -> None:
    hub_stack.env.update(JUPYTERHUB_DB_URL=postgres.url, PGPASSWORD=postgres.password)
    restart_keeps_login_and_auth_state(hub_stack)
    assert_no_secret_in(postgres.log_path.read_text(errors="replace"), SECRETS)


def test_sqlite_hub_restart_keeps_sessions_and_auth_state(hub_stack: HubStack) -> None:
    data = hub_stack.tmp / "data"
    data.mkdir()
    hub_stack.env["JUPYTERHUB_DB_URL"] = f"sqlite:///{data}/jupyterhub.sqlite"
    restart_keeps_login_and_auth_state(hub_stack)
    assert (data / "jupyterhub.sqlite").stat().st_size > 0


def run_hub_expecting_refusal(env: dict[str, str], tmp: Path) -> tuple[int, str]:
    log = tmp / "refused.log"
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)]
    hub = start("jupyterhub", cmd, env, log, cwd=tmp / "hub-cwd")
    try:
        code = hub.popen.wait(60)
    finally:
        hub.stop()
    return code, hub.log()


def test_hub_refuses_to_start_listing_every_problem(tmp_path: Path) -> None:
    env = hub_env(tmp_path, free_port(), free_port())
    env.update(
        JUPYTERHUB_COOKIE_SECRET="not-hex-" + COOKIE_SECRET[:20],
        JUPYTERHUB_CRYPT_KEY=CRYPT_KEY[:40],
        JUPYTERHUB_DB_URL="sqlite://",
    )
    del env["CONFIGPROXY_AUTH_TOKEN"]
    del env["KBASE_AUTH_URL"]
    code, output = run_hub_expecting_refusal(env, tmp_path)
    assert code == 2
    assert "the hub cannot start, 5 problem(s)" in output
    for name in (
        "JUPYTERHUB_COOKIE_SECRET",
        "JUPYTERHUB_CRYPT_KEY",
        "in-memory SQLite",
        "CONFIGPROXY_AUTH_TOKEN",
        "KBASE_AUTH_URL is required",
    ):
        assert name in output
    assert list((tmp_path / "hub-cwd").iterdir()) == []
    assert_no_secret_in(output, [COOKIE_SECRET[:20], CRYPT_KEY[:40]])


def test_hub_refuses_a_database_that_would_not_persist(tmp_path: Path) -> None:
    env = hub_env(tmp_path, free_port(), free_port())
    env["JUPYTERHUB_DB_URL"] = f"sqlite:///{tmp_path}/no-such-folder/jupyterhub.sqlite"
    code, output = run_hub_expecting_refusal(env, tmp_path)
    assert code == 2
    assert "the folder of the SQLite file does not exist" in output
    assert_no_secret_in(output, SECRETS)


# The checks themselves, without a hub: one case per rule.
SECRET_NAMES = {"JUPYTERHUB_COOKIE_SECRET", "JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN", "PGPASSWORD"}
GOOD = {
    "JUPYTERHUB_COOKIE_SECRET": COOKIE_SECRET,
    "JUPYTERHUB_CRYPT_KEY": CRYPT_KEY,
    "JUPYTERHUB_DB_URL": "postgresql://jupyterhub@db:5432/jupyterhub",
    "PGPASSWORD": PG_PASSWORD,
    "CONFIGPROXY_API_URL": "http://proxy-api:8001",
    "CONFIGPROXY_AUTH_TOKEN": PROXY_TOKEN,
    "JUPYTERHUB_AUTHENTICATOR_CLASS": "kbase",
    "KBASE_AUTH_URL": "https://kbase.us/services/auth/",
    "KBASE_APPROVED_ROLES": "BERDL_USER",
    "BERDL_HUB_PUBLIC_URL": "https://hub.berdl.kbase.us/",
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"JUPYTERHUB_COOKIE_SECRET": ""}, "JUPYTERHUB_COOKIE_SECRET is required"),
        ({"JUPYTERHUB_COOKIE_SECRET": "ab" * 16}, "JUPYTERHUB_COOKIE_SECRET must be 64 hex"),
        ({"JUPYTERHUB_CRYPT_KEY": ""}, "JUPYTERHUB_CRYPT_KEY is required"),
        ({"JUPYTERHUB_CRYPT_KEY": f"{CRYPT_KEY};short"}, "JUPYTERHUB_CRYPT_KEY: key 2 is not 32 bytes"),
        ({"JUPYTERHUB_DB_URL": "sqlite:///:memory:"}, "in-memory SQLite"),
        ({"JUPYTERHUB_DB_URL": "postgresql://jh:url-password-123@db/jh"}, "must not hold a password"),
        ({"PGPASSWORD": ""}, "PGPASSWORD is required"),
        ({"JUPYTERHUB_DB_URL": "mysql://jh@db/jh"}, "unsupported database 'mysql'"),
        ({"CONFIGPROXY_API_URL": ""}, "CONFIGPROXY_API_URL is required"),
        ({"CONFIGPROXY_API_URL": "proxy-api:8001"}, "CONFIGPROXY_API_URL must be an http(s) URL"),
        ({"CONFIGPROXY_AUTH_TOKEN": "short"}, "CONFIGPROXY_AUTH_TOKEN must be at least 32"),
        ({"JUPYTERHUB_AUTHENTICATOR_CLASS": ""}, "JUPYTERHUB_AUTHENTICATOR_CLASS is required"),
        ({"JUPYTERHUB_AUTHENTICATOR_CLASS": "dummy"}, "lets anyone in"),
        ({"BERDL_IDLE_TIMEOUT": "1h"}, "BERDL_IDLE_TIMEOUT must be whole seconds"),
        ({"KBASE_AUTH_URL": ""}, "KBASE_AUTH_URL is required with the kbase authenticator"),
        ({"KBASE_AUTH_URL": "kbase.us/services/auth/"}, "KBASE_AUTH_URL must be an http(s) URL"),
        ({"KBASE_LOGIN_URL": "ftp://kbase.us/login"}, "KBASE_LOGIN_URL must be an http(s) URL"),
        ({"KBASE_APPROVED_ROLES": " , "}, "KBASE_APPROVED_ROLES is required"),
        ({"BERDL_HUB_PUBLIC_URL": ""}, "BERDL_HUB_PUBLIC_URL is required with the kbase authenticator"),
        ({"BERDL_HUB_PUBLIC_URL": "hub.berdl.kbase.us"}, "BERDL_HUB_PUBLIC_URL must be an http(s) URL"),
        ({"KBASE_LOGOUT_URL": "kbase.us/logout"}, "KBASE_LOGOUT_URL must be an http(s) URL"),
    ],
)
def test_each_rule_names_its_variable(change: dict[str, str], problem: str) -> None:
    with pytest.raises(hub_config.HubConfigError) as raised:
        hub_config.load({**GOOD, **change})
    assert raised.value.problems == [next(p for p in raised.value.problems if problem in p)]
    secret_values = [v for k, v in change.items() if k in SECRET_NAMES and v] + ["url-password-123"]
    assert_no_secret_in(str(raised.value), secret_values)


def test_good_settings_configure_the_hub() -> None:
    from traitlets.config import Config

    settings = hub_config.load(GOOD)
    c = Config()
    hub_config.apply(c, settings, {"BERDL_INIT_IMAGE": "init:1"})
    assert c.JupyterHub.cookie_secret == bytes.fromhex(COOKIE_SECRET)
    assert c.CryptKeeper["keys"] == [bytes.fromhex(CRYPT_KEY)]
    assert c.Authenticator.enable_auth_state is True
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.cleanup_servers is False
    assert c.BERDLSpawner.init_image == "init:1"
    assert c.KBaseAuthenticator.auth_url == "https://kbase.us/services/auth/"
    assert c.KBaseAuthenticator.approved_roles == ["BERDL_USER"]
    assert c.JupyterHub.public_url == "https://hub.berdl.kbase.us/"
    culler = c.JupyterHub.services[0]
    assert culler["name"] == "jupyterhub-idle-culler"
    assert "--timeout=3600" in culler["command"]
    assert c.JupyterHub.load_roles[0]["scopes"] == hub_config.IDLE_CULLER_SCOPES
    assert PG_PASSWORD not in repr(settings)
    assert COOKIE_SECRET not in repr(settings)


def test_base64_crypt_keys_and_rotation_and_the_dev_switch() -> None:
    import base64

    b64 = base64.urlsafe_b64encode(bytes(range(32))).decode()
    settings = hub_config.load(
        {
            **GOOD,
            "JUPYTERHUB_CRYPT_KEY": f"{b64};{CRYPT_KEY}",
            "JUPYTERHUB_DB_URL": "sqlite://",
            "JUPYTERHUB_AUTHENTICATOR_CLASS": "dummy",
            "BERDL_HUB_DEV_MODE": "1",
        }
    )
    assert settings.crypt_keys == (bytes(range(32)), bytes.fromhex(CRYPT_KEY))
