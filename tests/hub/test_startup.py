"""A real `jupyterhub` process for each start-up an operator meets: an authenticator that is not installed,
a proxy that is not up yet (late, or never), PostgreSQL refusing the connection, and an SQLite database
of an older schema. Each failure is one line and an exit status, never a traceback."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localhub.procs import Postgres, base_env, free_port, proxy_command, start, wait_for
from tests.hub.hubtest_support import assert_no_secret_in
from tests.hub.test_hub import (
    CONFIG,
    PROXY_TOKEN,
    SECRETS,
    hub_env,
    postgres,  # noqa: F401  (the fixture: a real PostgreSQL)
    run_hub_expecting_refusal,
    wait_for_log,
)

pytestmark = pytest.mark.slow
# Logged once JupyterHub handles SIGTERM (a stop before it would kill the hub with the signal).
RUNNING = "JupyterHub is now running"


def problem_lines(output: str) -> list[str]:
    """The lines of the hub's refusal that name a problem."""
    return [line for line in output.splitlines() if line.startswith("  - ")]


def sqlite_env(tmp: Path, hub_port: int = 0, proxy_api_port: int = 0) -> dict[str, str]:
    env = hub_env(tmp, hub_port or free_port(), proxy_api_port or free_port())
    (tmp / "data").mkdir(exist_ok=True)
    env["JUPYTERHUB_DB_URL"] = f"sqlite:///{tmp}/data/jupyterhub.sqlite"
    return env


def test_an_authenticator_that_is_not_installed_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    env["JUPYTERHUB_AUTHENTICATOR_CLASS"] = "kbase_auth_typo.KBaseAuthenticator"
    code, output = run_hub_expecting_refusal(env, tmp_path)
    assert code == 2
    (line,) = problem_lines(output)
    assert line.startswith(
        "  - JUPYTERHUB_AUTHENTICATOR_CLASS 'kbase_auth_typo.KBaseAuthenticator' is not an installed "
        "authenticator: use an entry point name ("
    )
    assert "dummy, kbase, null, pam" in line  # the installed ones, as JupyterHub finds them
    assert line.endswith(") or the class path of an Authenticator")
    assert "Traceback" not in output


def test_a_proxy_that_never_answers_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)  # CONFIGPROXY_API_URL: a free port where nothing listens
    (tmp_path / "tree.yaml").write_text("BERDLProxy:\n  connect_timeout: 3\n")
    env["BERDL_HUB_CONFIG_TREE"] = str(tmp_path / "tree.yaml")
    code, output = run_hub_expecting_refusal(env, tmp_path)
    assert code == 1
    critical = [line for line in output.splitlines() if line.startswith("[C ")]
    assert len(critical) == 1, output
    assert "the proxy's API at http://127.0.0.1:" in critical[0]
    assert "did not answer in 3 s" in critical[0]
    assert "Connect call failed" in critical[0] or "Connection refused" in critical[0]
    assert "Traceback" not in output


def test_a_proxy_that_starts_after_the_hub_is_waited_for(tmp_path: Path) -> None:
    hub_port, proxy_port, proxy_api_port = free_port(), free_port(), free_port()
    env = sqlite_env(tmp_path, hub_port, proxy_api_port)
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)]
    hub = start("jupyterhub", cmd, env, tmp_path / "hub.log", cwd=tmp_path / "hub-cwd")
    proxy = None
    try:
        deadline = time.monotonic() + 60
        while "does not answer" not in hub.log():
            assert hub.popen.poll() is None, hub.log()
            assert time.monotonic() < deadline, hub.log()
            time.sleep(0.1)
        chp = proxy_command(proxy_port, proxy_api_port, f"http://127.0.0.1:{hub_port}")
        proxy_env = {**base_env(), "CONFIGPROXY_AUTH_TOKEN": PROXY_TOKEN}
        proxy = start("configurable-http-proxy", chp, proxy_env, tmp_path / "proxy.log")
        wait_for(f"http://127.0.0.1:{proxy_port}/hub/health", 90, hub)  # the hub's route, through the proxy
        assert httpx.get(f"http://127.0.0.1:{proxy_port}/hub/health").status_code == 200
        wait_for_log(hub, RUNNING)
        assert "Traceback" not in hub.log()
    finally:
        assert hub.stop() == 0, hub.log()
        if proxy is not None:
            proxy.stop()
    assert_no_secret_in(hub.log(), SECRETS)


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"PGPASSWORD": "not-the-password"}, 'password authentication failed for user "jupyterhub"'),
        ({"sslmode": "require"}, "server does not support SSL, but SSL was required"),
    ],
)
def test_postgresql_refusing_the_connection_shows_its_reason(
    tmp_path: Path,
    postgres: Postgres,  # noqa: F811
    change: dict[str, str],
    cause: str,
) -> None:
    env = hub_env(tmp_path, free_port(), free_port())
    env["JUPYTERHUB_DB_URL"] = postgres.url + (f"?sslmode={change['sslmode']}" if "sslmode" in change else "")
    env["PGPASSWORD"] = change.get("PGPASSWORD", postgres.password)
    code, output = run_hub_expecting_refusal(env, tmp_path)
    assert code == 2
    (line,) = problem_lines(output)
    assert line.startswith("  - JUPYTERHUB_DB_URL: PostgreSQL refused the connection: ")
    assert cause in line
    assert "Traceback" not in output
    assert_no_secret_in(output, SECRETS)


def alembic(db_url: str, *args: str, password: str = "") -> None:
    """JupyterHub's own migrations, run the way `jupyterhub upgrade-db` runs them."""
    from jupyterhub.dbutil import _temp_alembic_ini

    env = {**base_env(), **({"PGPASSWORD": password} if password else {})}
    with _temp_alembic_ini(db_url) as ini:
        alembic_cli = Path(sys.executable).parent / "alembic"
        result = subprocess.run([str(alembic_cli), "-c", ini, *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def schema_revision(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


@contextlib.contextmanager
def proxy_beside(tmp: Path, env: dict[str, str]) -> Iterator[None]:
    """A configurable-http-proxy at the API address the hub's environment names."""
    api_port = int(env["CONFIGPROXY_API_URL"].rsplit(":", 1)[1])
    chp = proxy_command(free_port(), api_port, env["BERDL_HUB_BIND_URL"])
    proxy_env = {**base_env(), "CONFIGPROXY_AUTH_TOKEN": PROXY_TOKEN}
    proxy = start("configurable-http-proxy", chp, proxy_env, tmp / f"proxy-{time.monotonic_ns()}.log")
    try:
        wait_for(f"http://127.0.0.1:{api_port}/api/routes", 30, proxy)
        yield
    finally:
        proxy.stop()


def run_hub_until_healthy(env: dict[str, str], tmp: Path) -> str:
    """Start the hub, wait until it answers, stop it; its log."""
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)]
    hub = start("jupyterhub", cmd, env, tmp / f"hub-{time.monotonic_ns()}.log", cwd=tmp / "hub-cwd")
    try:
        wait_for(f"{env['BERDL_HUB_BIND_URL']}/hub/health", 60, hub)
        wait_for_log(hub, RUNNING)
    finally:
        assert hub.stop() == 0, hub.log()
    return hub.log()


def test_an_older_sqlite_schema_is_upgraded_after_a_copy_is_kept(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    db = tmp_path / "data" / "jupyterhub.sqlite"
    with proxy_beside(tmp_path, env):
        run_hub_until_healthy(env, tmp_path)
        head = schema_revision(db)
        # The database as the previous JupyterHub release left it: one migration back.
        alembic(f"sqlite:///{db}", "downgrade", "-1")
        older = schema_revision(db)
        assert older != head
        log = run_hub_until_healthy(env, tmp_path)
    assert schema_revision(db) == head
    (copy,) = db.parent.glob("jupyterhub.sqlite.*")
    assert schema_revision(copy) == older
    assert f"Backing up {db} => {copy}" in log


def test_an_older_postgresql_schema_is_upgraded_only_when_the_tree_says_so(
    tmp_path: Path,
    postgres: Postgres,  # noqa: F811
) -> None:
    env = hub_env(tmp_path, free_port(), free_port())
    env.update(JUPYTERHUB_DB_URL=postgres.url, PGPASSWORD=postgres.password)
    psycopg_url = postgres.url.replace("postgresql://", "postgresql+psycopg://")
    with proxy_beside(tmp_path, env):
        run_hub_until_healthy(env, tmp_path)
        alembic(psycopg_url, "downgrade", "-1", password=postgres.password)

        code, output = run_hub_expecting_refusal(env, tmp_path)
        assert code == 1
        assert "Backup your database and run `jupyterhub upgrade-db`" in output

        (tmp_path / "tree.yaml").write_text("JupyterHub:\n  upgrade_db: true\n")
        env["BERDL_HUB_CONFIG_TREE"] = str(tmp_path / "tree.yaml")
        log = run_hub_until_healthy(env, tmp_path)
    assert "Upgrading postgresql://jupyterhub:[redacted]@" in log  # the password, held in the URL, redacted
    assert_no_secret_in(log + output, SECRETS)


def test_the_hub_names_the_settings_the_notebook_lacks_once_and_starts(tmp_path: Path) -> None:
    """An operator who has not set every endpoint the notebook needs gets one line naming them all when
    the hub starts (none at each spawn: the spawner does not look again); the hub runs anyway."""
    env = sqlite_env(tmp_path)
    env.update(CDM_TASK_SERVICE_URL="http://cdm-task-service:8080", MINIO_ENDPOINT_URL="")
    with proxy_beside(tmp_path, env):
        log = run_hub_until_healthy(env, tmp_path)
    warnings = [line for line in log.splitlines() if "notebook needs" in line]
    assert warnings == [
        "[berdl-hub] warning: user pods will lack settings the notebook needs: MINIO_ENDPOINT_URL, "
        "BERDL_HIVE_METASTORE_URI, DATALAKE_MCP_SERVER_URL, SPARK_CLUSTER_MANAGER_API_URL, "
        "GOVERNANCE_API_URL (set them in the hub's environment, hub-settings.env; deploy/README.md, "
        "Settings)"
    ]
