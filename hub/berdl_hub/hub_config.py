"""The hub's settings, read from the environment and the mounted Secret's files, and checked together.

`load()` collects every problem before it reports any, so an operator fixes a broken Secret in one round;
`apply()` turns good settings into JupyterHub configuration. No value of a secret is ever put in a
message: problems name the variable and what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from traitlets.config import Config

from berdl_hub import config_tree, hub_requests, hub_secrets, proxy_watch

DEFAULT_DB_URL = "sqlite:////srv/jupyterhub/data/jupyterhub.sqlite"
# Set to 1 on a laptop only: allows a database that vanishes with the process and the dummy authenticator.
DEV_SWITCH = "BERDL_HUB_DEV_MODE"
IDLE_CULLER = "jupyterhub-idle-culler"
# What jupyterhub-idle-culler needs to find idle servers and stop them, and nothing more
# (no admin:users: it does not delete users).
IDLE_CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# Authenticators that let anyone in, refused outside development.
OPEN_AUTHENTICATORS = frozenset({"dummy", "null", "jupyterhub.auth.DummyAuthenticator"})
KBASE_AUTHENTICATORS = frozenset({"kbase", "berdl_hub.auth.KBaseAuthenticator"})
#: The service whose token (BERDL_HUB_METRICS_TOKEN) Prometheus scrapes /hub/metrics with, and its only
#: scope (JupyterHub's authenticate_prometheus, on by default, as z2jh's hub.authenticatePrometheus).
METRICS_SERVICE = "berdl-prometheus"
METRICS_SCOPES = ["read:metrics"]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class HubConfigError(Exception):
    """Everything wrong with the hub's environment, one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the hub cannot start, {len(problems)} problem(s) in its environment:\n{lines}")


@dataclass(frozen=True)
class KBaseLoginSettings:
    """The `kbase` authenticator's settings (see berdl_hub.auth.KBaseAuthenticator)."""

    auth_url: str
    login_url: str
    approved_roles: tuple[str, ...]
    admin_roles: tuple[str, ...]
    logout_url: str = ""


@dataclass(frozen=True)
class HubSettings:
    cookie_secret: bytes
    crypt_keys: tuple[bytes, ...]
    db_url: str
    db_password: str
    proxy_api_url: str
    proxy_auth_token: str
    authenticator_class: str
    kbase: KBaseLoginSettings | None  # set when the `kbase` authenticator is selected
    public_url: str  # JupyterHub.public_url: where users reach the hub (required with `kbase`)
    hub_bind_url: str
    hub_connect_url: str
    idle_timeout: int
    cull_every: int  # seconds between the idle culler's rounds
    extra_config: str
    config_tree: Config  # BERDL_HUB_CONFIG_TREE, read; empty when unset
    metrics_token: str = ""  # BERDL_HUB_METRICS_TOKEN: Prometheus's token; empty, no such service

    def __repr__(self) -> str:  # the secrets stay out of any traceback or debug print
        return f"HubSettings(db_url={self.db_url!r}, proxy_api_url={self.proxy_api_url!r}, ...)"


def _crypt_key(text: str) -> bytes | None:
    """One 32-byte key, hex (64 characters) or base64 (standard or URL-safe); None when malformed."""
    text = text.strip()
    if _HEX64.match(text):
        return bytes.fromhex(text)
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            key = decode(text.encode("ascii"))
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    return None


def _check_db(url: str, environ: Mapping[str, str], dev: bool, problems: list[str]) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        problems.append("JUPYTERHUB_DB_URL is not a database URL")
        return
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in url
        if in_memory:
            if not dev:
                problems.append(
                    "JUPYTERHUB_DB_URL is an in-memory SQLite database, lost at every restart "
                    f"(set {DEV_SWITCH}=1 to allow it in development)"
                )
            return
        folder = Path(database).parent
        if not folder.is_dir():
            problems.append(f"JUPYTERHUB_DB_URL: the folder of the SQLite file does not exist: {folder}")
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f"JUPYTERHUB_DB_URL: the folder of the SQLite file is not writable: {folder}")
    elif backend == "postgresql":
        if parsed.password is not None:
            problems.append("JUPYTERHUB_DB_URL must not hold a password; put it in PGPASSWORD")
        if not environ.get("PGPASSWORD"):
            problems.append("PGPASSWORD is required with a PostgreSQL JUPYTERHUB_DB_URL")
        if parsed.get_driver_name() != "psycopg":
            problems.append("JUPYTERHUB_DB_URL: use postgresql:// or postgresql+psycopg:// (psycopg 3)")
        elif importlib.util.find_spec("psycopg") is None:
            problems.append("JUPYTERHUB_DB_URL is PostgreSQL but psycopg is not installed")
    else:
        problems.append(f"JUPYTERHUB_DB_URL: unsupported database {backend!r} (use sqlite or postgresql)")


def _check_url(name: str, value: str, problems: list[str]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{name} must be an http(s) URL with a host, got {value!r}")


def _roles(text: str) -> tuple[str, ...]:
    return tuple(role.strip() for role in text.split(",") if role.strip())


def _check_kbase(env: Mapping[str, str], problems: list[str]) -> KBaseLoginSettings:
    auth_url = env.get("KBASE_AUTH_URL", "").strip()
    if not auth_url:
        problems.append(
            "KBASE_AUTH_URL is required with the kbase authenticator (e.g. https://kbase.us/services/auth/)"
        )
    else:
        _check_url("KBASE_AUTH_URL", auth_url, problems)
    login_url = env.get("KBASE_LOGIN_URL", "").strip()
    if login_url:
        _check_url("KBASE_LOGIN_URL", login_url, problems)
    logout_url = env.get("KBASE_LOGOUT_URL", "").strip()
    if logout_url:
        _check_url("KBASE_LOGOUT_URL", logout_url, problems)
    if not env.get("BERDL_HUB_PUBLIC_URL", "").strip():
        problems.append(
            "BERDL_HUB_PUBLIC_URL is required with the kbase authenticator: the URL users reach the hub at "
            "(e.g. https://hub.berdl.kbase.us/), where KBase's login page sends them back"
        )
    approved = _roles(env.get("KBASE_APPROVED_ROLES", ""))
    if not approved:
        problems.append(
            "KBASE_APPROVED_ROLES is required with the kbase authenticator "
            "(the KBase custom roles that may log in, comma-separated)"
        )
    admins = _roles(env.get("KBASE_ADMIN_ROLES", ""))
    return KBaseLoginSettings(auth_url, login_url, approved, admins, logout_url)


def load(environ: Mapping[str, str] | None = None) -> HubSettings:
    """Read and check every setting; raise HubConfigError listing all problems. A secret found as a file
    in the secrets folder (hub_secrets) wins over its environment variable."""
    env, problems = hub_secrets.with_secret_files(os.environ if environ is None else environ)
    dev = env.get(DEV_SWITCH, "") == "1"

    cookie = env.get("JUPYTERHUB_COOKIE_SECRET", "").strip()
    if not cookie:
        problems.append("JUPYTERHUB_COOKIE_SECRET is required (64 hex characters: openssl rand -hex 32)")
    elif not _HEX64.match(cookie):
        problems.append(f"JUPYTERHUB_COOKIE_SECRET must be 64 hex characters, got {len(cookie)} characters")

    crypt = env.get("JUPYTERHUB_CRYPT_KEY", "")
    keys: list[bytes] = []
    if not crypt.strip():
        problems.append("JUPYTERHUB_CRYPT_KEY is required (32-byte keys, hex or base64, ';'-separated)")
    else:
        for position, part in enumerate((p for p in crypt.split(";") if p.strip()), start=1):
            key = _crypt_key(part)
            if key is None:
                problems.append(f"JUPYTERHUB_CRYPT_KEY: key {position} is not 32 bytes in hex or base64")
            else:
                keys.append(key)

    db_url = env.get("JUPYTERHUB_DB_URL", "").strip() or DEFAULT_DB_URL
    _check_db(db_url, env, dev, problems)

    proxy_api_url = env.get("CONFIGPROXY_API_URL", "").strip()
    if not proxy_api_url:
        problems.append("CONFIGPROXY_API_URL is required (the proxy runs in its own pod)")
    else:
        _check_url("CONFIGPROXY_API_URL", proxy_api_url, problems)
    proxy_token = env.get("CONFIGPROXY_AUTH_TOKEN", "")
    if not proxy_token:
        problems.append("CONFIGPROXY_AUTH_TOKEN is required (the proxy's API token: openssl rand -hex 32)")
    elif len(proxy_token) < 32 or any(c.isspace() for c in proxy_token):
        problems.append("CONFIGPROXY_AUTH_TOKEN must be at least 32 characters without spaces")

    authenticator = env.get("JUPYTERHUB_AUTHENTICATOR_CLASS", "").strip()
    if not authenticator:
        problems.append("JUPYTERHUB_AUTHENTICATOR_CLASS is required (an entry point name or a class path)")
    elif authenticator in OPEN_AUTHENTICATORS and not dev:
        problems.append(
            f"JUPYTERHUB_AUTHENTICATOR_CLASS {authenticator!r} lets anyone in ({DEV_SWITCH}=1 allows it)"
        )
    kbase = _check_kbase(env, problems) if authenticator in KBASE_AUTHENTICATORS else None

    public_url = env.get("BERDL_HUB_PUBLIC_URL", "").strip()
    if public_url:
        _check_url("BERDL_HUB_PUBLIC_URL", public_url, problems)

    hub_bind_url = env.get("BERDL_HUB_BIND_URL", "").strip() or "http://0.0.0.0:8081"
    _check_url("BERDL_HUB_BIND_URL", hub_bind_url, problems)
    hub_connect_url = env.get("BERDL_HUB_CONNECT_URL", "").strip()
    if hub_connect_url:
        _check_url("BERDL_HUB_CONNECT_URL", hub_connect_url, problems)

    idle_text = env.get("BERDL_IDLE_TIMEOUT", "").strip() or "3600"
    idle_timeout = int(idle_text) if idle_text.isdigit() else -1
    if idle_timeout < 0:
        problems.append(f"BERDL_IDLE_TIMEOUT must be whole seconds (0 turns culling off), got {idle_text!r}")
    cull_text = env.get("BERDL_CULL_EVERY", "").strip()
    if cull_text:
        cull_every = int(cull_text) if cull_text.isdigit() else 0
        if cull_every < 1:
            problems.append(f"BERDL_CULL_EVERY must be whole seconds, 1 or more, got {cull_text!r}")
    else:
        cull_every = default_cull_every(max(idle_timeout, 0))

    metrics_token = env.get("BERDL_HUB_METRICS_TOKEN", "")
    if metrics_token and (len(metrics_token) < 32 or any(c.isspace() for c in metrics_token)):
        problems.append("BERDL_HUB_METRICS_TOKEN must be at least 32 characters without spaces")

    extra_config = env.get("BERDL_HUB_EXTRA_CONFIG", "").strip()
    if extra_config and not Path(extra_config).is_file():
        problems.append(f"BERDL_HUB_EXTRA_CONFIG names no file: {extra_config}")

    tree_path = env.get("BERDL_HUB_CONFIG_TREE", "").strip()
    tree = Config()
    if tree_path:
        try:
            tree = config_tree.read(tree_path)
        except config_tree.TreeError as error:
            problems.append(f"BERDL_HUB_CONFIG_TREE: {error}")

    if problems:
        raise HubConfigError(problems)
    return HubSettings(
        cookie_secret=bytes.fromhex(cookie),
        crypt_keys=tuple(keys),
        db_url=db_url,
        db_password=env.get("PGPASSWORD", ""),
        proxy_api_url=proxy_api_url,
        proxy_auth_token=proxy_token,
        authenticator_class=authenticator,
        kbase=kbase,
        public_url=public_url,
        hub_bind_url=hub_bind_url,
        hub_connect_url=hub_connect_url,
        idle_timeout=idle_timeout,
        cull_every=cull_every,
        extra_config=extra_config,
        config_tree=tree,
        metrics_token=metrics_token,
    )


def default_cull_every(idle_timeout: int) -> int:
    """The culler's interval when BERDL_CULL_EVERY is unset: a quarter of the timeout, within 60 to
    600 s (a server is stopped at most that much after its timeout)."""
    return max(60, min(600, idle_timeout // 4))


def _db_url_with_password(settings: HubSettings) -> str:
    """The URL the hub connects with: PostgreSQL's password (from its file, else PGPASSWORD) goes in,
    in memory only. JupyterHub's own schema checks and upgrades (alembic) build their engines from the
    URL alone, so neither a connection argument nor the environment (kept free of secrets) would reach
    them; JupyterHub redacts the password wherever it logs the URL."""
    if not settings.db_password or not settings.db_url.startswith("postgresql"):
        return settings.db_url
    from sqlalchemy.engine import make_url

    url = make_url(settings.db_url).set(password=settings.db_password)
    return url.render_as_string(hide_password=False)


def apply(c: Any, settings: HubSettings, environ: Mapping[str, str] | None = None) -> None:
    """Configure JupyterHub (`c` is the config object of jupyterhub_config.py).

    Precedence, the later winning: the settings tree, then what is set here (from the environment, or
    fixed), then the operator's Python file (run by jupyterhub_config.py after this). The lists
    `JupyterHub.services` and `JupyterHub.load_roles` are joined instead: the tree's entries, then these.
    """
    env = os.environ if environ is None else environ
    c.merge(settings.config_tree)

    # Set explicitly: JupyterHub reads JPY_COOKIE_SECRET, not our name, and without a secret it writes a
    # random cookie_secret file into the pod, which logs everyone out when the pod is replaced.
    c.JupyterHub.cookie_secret = settings.cookie_secret
    c.CryptKeeper.keys = list(settings.crypt_keys)
    c.Authenticator.enable_auth_state = True
    c.JupyterHub.authenticator_class = settings.authenticator_class
    if settings.kbase is not None:
        c.KBaseAuthenticator.auth_url = settings.kbase.auth_url
        if settings.kbase.login_url:
            c.KBaseAuthenticator.kbase_login_url = settings.kbase.login_url
        c.KBaseAuthenticator.approved_roles = list(settings.kbase.approved_roles)
        c.KBaseAuthenticator.admin_roles = list(settings.kbase.admin_roles)
        if settings.kbase.logout_url:
            c.KBaseAuthenticator.kbase_logout_url = settings.kbase.logout_url
    if settings.public_url:
        # Links that lead back to the hub (KBase's login page's way back) are built from it, never from
        # the request's Host header.
        c.JupyterHub.public_url = settings.public_url

    c.JupyterHub.db_url = _db_url_with_password(settings)
    if settings.db_url.startswith("sqlite:"):
        # As z2jh does: a JupyterHub release with a new schema upgrades the file at start, after copying it
        # to jupyterhub.sqlite.<timestamp> beside it. PostgreSQL is upgraded on purpose (deploy/README.md).
        c.JupyterHub.upgrade_db = True

    # The proxy runs in its own pod and keeps routing while the hub restarts; BERDLProxy waits for one
    # that is not up yet.
    c.JupyterHub.proxy_class = "berdl_hub.proxy.BERDLProxy"
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = settings.proxy_api_url
    c.ConfigurableHTTPProxy.auth_token = settings.proxy_auth_token
    c.JupyterHub.cleanup_servers = False  # user pods survive a hub restart
    c.JupyterHub.cleanup_proxy = False

    c.JupyterHub.hub_bind_url = settings.hub_bind_url
    if settings.hub_connect_url:
        c.JupyterHub.hub_connect_url = settings.hub_connect_url

    c.JupyterHub.spawner_class = "berdl"
    spawner_settings = {
        "BERDL_NOTEBOOK_IMAGE": "image",
        "BERDL_INIT_IMAGE": "init_image",
        "SPARK_CLUSTER_MANAGER_API_URL": "spark_cluster_manager_url",
        "GOVERNANCE_API_URL": "governance_api_url",
    }
    for variable, trait in spawner_settings.items():
        if env.get(variable):
            setattr(c.BERDLSpawner, trait, env[variable])

    # Plain lists, added to what the settings tree set: the operator's extra config can .append() its own.
    services: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    if settings.idle_timeout > 0:
        services.append(
            {
                "name": IDLE_CULLER,
                "command": [
                    sys.executable,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={settings.idle_timeout}",
                    f"--cull-every={settings.cull_every}",
                ],
            }
        )
        roles.append({"name": IDLE_CULLER, "scopes": list(IDLE_CULLER_SCOPES), "services": [IDLE_CULLER]})
    # A restarted proxy gets its routes back within seconds, not at the next last_activity_interval.
    services.append(
        {"name": proxy_watch.SERVICE_NAME, "command": [sys.executable, "-m", proxy_watch.__name__]}
    )
    roles.append(
        {
            "name": proxy_watch.SERVICE_NAME,
            "scopes": list(proxy_watch.SCOPES),
            "services": [proxy_watch.SERVICE_NAME],
        }
    )
    if settings.metrics_token:
        # Prometheus scrapes /hub/metrics with this token, which may read the metrics and nothing else.
        services.append({"name": METRICS_SERVICE, "api_token": settings.metrics_token})
        roles.append({"name": METRICS_SERVICE, "scopes": list(METRICS_SCOPES), "services": [METRICS_SERVICE]})
    # The culler's stops and the watcher's restores, counted in the hub's metrics as it answers them
    # (hub_requests); an operator's own log_function in the tree wins.
    tornado_settings = dict(c.JupyterHub.get("tornado_settings") or {})
    tornado_settings.setdefault(
        "log_function", hub_requests.log_function(culler=IDLE_CULLER, proxy_watch=proxy_watch.SERVICE_NAME)
    )
    c.JupyterHub.tornado_settings = tornado_settings
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), *services]
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), *roles]


def preflight(settings: HubSettings) -> None:
    """Checks that load() leaves out because they import plugins or reach the network: that the
    authenticator resolves as JupyterHub would resolve it, and that PostgreSQL accepts a connection.
    Raises HubConfigError with the real cause, which JupyterHub's own messages leave out."""
    problems = [
        problem
        for problem in (
            _authenticator_problem(settings.authenticator_class),
            _database_problem(_db_url_with_password(settings)),
        )
        if problem
    ]
    if problems:
        raise HubConfigError(problems)


def _authenticator_problem(name: str) -> str | None:
    from jupyterhub.app import JupyterHub
    from traitlets import TraitError

    trait = JupyterHub.class_traits()["authenticator_class"]
    try:
        trait.validate(None, name)
    except TraitError:
        installed = ", ".join(sorted(trait.load_entry_points()))
        return (
            f"JUPYTERHUB_AUTHENTICATOR_CLASS {name!r} is not an installed authenticator: "
            f"use an entry point name ({installed}) or the class path of an Authenticator"
        )
    return None


def _database_problem(db_url: str) -> str | None:
    """PostgreSQL's own reason for refusing a connection (wrong password, no SSL...), on one line.

    `db_url` is the one the hub connects with, its password in it; the reason PostgreSQL gives names no
    password, and only the reason is kept."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError

    if not db_url.startswith("postgresql"):
        return None
    engine = create_engine(db_url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect():
            return None
    except DBAPIError as error:
        cause = "; ".join(line.strip() for line in str(error.orig).splitlines() if line.strip())
        return f"JUPYTERHUB_DB_URL: PostgreSQL refused the connection: {cause}"
    finally:
        engine.dispose()


def forget_secrets(environ: Any = None) -> None:
    """Drop the hub's secrets from `os.environ` once configured (local runs, where they come from the
    environment), so no process the hub starts inherits them. The database password is in the hub's
    database URL by then. `/proc/<hub>/environ` still shows the environment the hub started with: in
    Kubernetes the secrets are files (hub_secrets), never in it."""
    env = os.environ if environ is None else environ
    for name in hub_secrets.ALL_SECRET_NAMES:
        env.pop(name, None)
