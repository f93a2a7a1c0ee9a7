"""The whole BERDL stack on one machine: real PostgreSQL, configurable-http-proxy and JupyterHub (with
hub/jupyterhub_config.py), the stand-ins (services.py) and the node playing the real images.

Its folder `work` holds, for a person to look at:

- `node/`: the node's folders, the homes (`node/mnt/berdl/homes/NAME`) and the shared folder;
- `logs/TIME/`: each start's logs (the hub, the proxy, PostgreSQL, the stand-ins, and under `pods/` what
  each pod's containers printed), `logs/latest` the last start's;
- `postgres/`: the hub's database; `state.json` and `users.json`: the secrets that keep the hub's
  sessions and auth state readable, and the users' stand-in credentials (mode 0600);
- `prometheus/`: deploy/monitoring's scrape job and alerting rules for this hub (`prometheus.yml`) and
  the token it scrapes /hub/metrics with (localhub.prometheus: `running_prometheus` runs a Prometheus
  with them).

A stack started again in the same folder, not fresh, finds the homes, the database and the users as the
last one left them; the API stand-in and the node start empty, so the hub finds the servers it thought
running gone and clears them (its poll at start), and each user starts a server again.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from localhub import prometheus
from localhub.leftovers import RECORD, Leftovers, end_leftovers
from localhub.podman import INIT_IMAGE, NOTEBOOK_IMAGE, Podman
from localhub.procs import (
    Process,
    base_env,
    free_port,
    postgres_server,
    proxy_command,
    start,
    wait_for,
)
from localhub.services import StandIns, standins
from localhub.standins.kbase_auth2 import kbase_env
from localhub.standins.kube import NAMESPACE, kube_config
from localhub.tools import REPO
from localhub.users import User, save_users

# The image names the hub is configured with, as in a deployment; the node plays the local builds.
HUB_NOTEBOOK_IMAGE = "ghcr.io/kbase/berdl-notebook:e2e"
HUB_INIT_IMAGE = "ghcr.io/kbase/berdl-init:e2e"
LOCAL_IMAGES = {HUB_NOTEBOOK_IMAGE: NOTEBOOK_IMAGE, HUB_INIT_IMAGE: INIT_IMAGE}
#: On the node, as an operator would have it: homes below HOMES, a read-only shared folder.
HOMES = "/mnt/berdl/homes"
SHARED = "/mnt/berdl/shared"
SHARED_IN_POD = "/shared"

# The operator's settings of this hub (BERDL_HUB_EXTRA_CONFIG), as a deployment would set them.
EXTRA_CONFIG = f"""
c.BERDLSpawner.namespace = {NAMESPACE!r}
c.BERDLSpawner.home_host_path = {HOMES!r} + "/{{unescaped_username}}"
c.BERDLSpawner.shared_mounts = [
    {{"name": "shared", "mount_path": {SHARED_IN_POD!r}, "host_path": {SHARED!r}, "read_only": True}},
]
# The server's root is "/", so that the home and the shared folder are both below it; JupyterLab opens
# in the home, where its Launcher can make a notebook ("/" is root's). The home is the folder of the
# user's name, mounted at /home/NAME (BERDLSpawner's default home_mount_path, "/home/{{unescaped_username}}"
# in KubeSpawner's templates); in JupyterHub's own default_url the same folder is "/home/{{username}}",
# where {{username}} is the user's name (tests/localhub/test_stack_settings.py).
c.BERDLSpawner.notebook_dir = "/"
c.BERDLSpawner.default_url = "/lab/tree/home/{{username}}"
c.BERDLSpawner.init_favorites = [
    {{"path": "/home/{{unescaped_username}}", "name": "Home"}},
    {{"path": {SHARED_IN_POD!r}, "name": "Shared"}},
]
# A cold start on this machine builds the first venv and starts JupyterLab on 2 busy cores.
c.BERDLSpawner.start_timeout = 600
c.BERDLSpawner.http_timeout = 300
"""


@dataclass
class Stack:
    work: Path
    users: dict[str, User]
    standins: StandIns = field(repr=False)  # its stand-ins hold the users' tokens
    public_url: str
    hub_url: str
    hub: Process
    proxy: Process
    node_root: Path
    log_dir: Path
    secrets: list[str] = field(repr=False)
    leftovers: Leftovers = field(repr=False)
    #: Prometheus's token for /hub/metrics (the hub's berdl-prometheus service), and the configuration
    #: that scrapes this hub with it (localhub.prometheus.running_prometheus starts one).
    metrics_token: str = field(repr=False, default="")
    prometheus_config: Path | None = None
    #: What a stack in the same folder that did not stop had left running, and this start ended.
    leftovers_ended: list[str] = field(default_factory=list)
    #: How the hub and the proxy were started, so that a step can start them again the same way.
    hub_env: dict[str, str] = field(repr=False, default_factory=dict)
    proxy_cmd: list[str] = field(repr=False, default_factory=list)
    proxy_env: dict[str, str] = field(repr=False, default_factory=dict)
    _starts: int = field(repr=False, default=1)

    def home(self, user: str) -> Path:
        return self.node_root / HOMES.lstrip("/") / user

    @property
    def shared(self) -> Path:
        return self.node_root / SHARED.lstrip("/")

    def logs(self) -> str:
        """Every log this start of the stack wrote, in one text."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.rglob("*.log")))

    def stop_hub(self, *, kill: bool = False) -> None:
        """Stop the hub as Kubernetes does when it rolls the pod (SIGTERM), or kill it (SIGKILL), as an
        OOM kill or a lost node does: no shutdown hook runs. The proxy and the pods stay.

        A kill takes every process of the hub's container, as the container's end does: the services
        the hub started (the proxy watcher, the culler) run in sessions of their own, outside the
        hub's process group, and would otherwise go on with their API tokens beside the next hub."""
        self.hub.stop(kill=kill)

    def start_hub(self, env: Mapping[str, str] = {}) -> None:
        """Start the hub again with the settings it had (a new pod of the same Deployment), `env` on top;
        wait until it answers. Each start logs to a file of its own."""
        self._starts += 1
        log_path = self.log_dir / f"hub-{self._starts}.log"
        self.hub = _start_hub(self.work, {**self.hub_env, **env}, log_path, self.leftovers)

    @property
    def proxy_api_url(self) -> str:
        return self.hub_env["CONFIGPROXY_API_URL"]

    def proxy_routes(self) -> dict[str, Any]:
        """The proxy's routing table, from its own API, by path ("/user/alice/")."""
        headers = {"Authorization": f"token {self.proxy_env['CONFIGPROXY_AUTH_TOKEN']}"}
        return httpx.get(f"{self.proxy_api_url}/api/routes", headers=headers, timeout=5).json()

    def restart_proxy(self) -> None:
        """A new proxy on the same ports, with an empty routing table, as a restarted proxy pod has;
        returns once it answers."""
        self.proxy.stop()
        self._starts += 1
        self.proxy = start(
            "configurable-http-proxy",
            self.proxy_cmd,
            self.proxy_env,
            self.log_dir / f"proxy-{self._starts}.log",
        )
        self.leftovers.process(self.proxy)
        wait_for(f"{self.proxy_api_url}/api/routes", 30, self.proxy)


def _start_hub(work: Path, env: dict[str, str], log_path: Path, leftovers: Leftovers) -> Process:
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "hub" / "jupyterhub_config.py"), "--debug"]
    hub = start("jupyterhub", cmd, env, log_path, cwd=work / "hub")
    leftovers.process(hub)
    try:
        wait_for(f"{env['BERDL_HUB_BIND_URL']}/hub/health", 120, hub)
    except BaseException:
        hub.stop()
        raise
    return hub


def _prepare_node(node_root: Path, wheels: Mapping[str, bytes]) -> None:
    """The node's folders: where homes go, and a shared folder holding a README and some wheels."""
    (node_root / HOMES.lstrip("/")).mkdir(parents=True, exist_ok=True)
    shared = node_root / SHARED.lstrip("/")
    (shared / "wheels").mkdir(parents=True, exist_ok=True)
    (shared / "README.txt").write_text("BERDL shared data (read-only)\n")
    for name, data in wheels.items():
        (shared / "wheels" / name).write_bytes(data)


def _log_dir(work: Path) -> Path:
    """A new folder for this start's logs, `work/logs/TIME`, and `work/logs/latest` pointing to it."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = logs / stamp, 1
    while folder.exists():
        n += 1
        folder = logs / f"{stamp}-{n}"
    folder.mkdir()
    latest = logs / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(folder.name)
    return folder


def _write_private(path: Path, document: Any) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(document, indent=2) + "\n")


def notebook_settings() -> dict[str, str]:
    """The endpoints BERDL's notebook image needs (hub-settings.env's notebook section), which the hub
    forwards to every pod. No stand-in serves them, and this project's notebook image does not call them:
    each is an address on loopback where nothing listens, so that a pod has every variable the
    production image checks for, and a call, if any, goes nowhere."""
    nowhere = "127.0.0.1:9"
    return {
        "CDM_TASK_SERVICE_URL": f"http://{nowhere}/cdm-task-service",
        "MINIO_ENDPOINT_URL": nowhere,
        "BERDL_HIVE_METASTORE_URI": f"thrift://{nowhere}",
        "DATALAKE_MCP_SERVER_URL": f"http://{nowhere}/datalake-mcp-server",
    }


def _kept_secrets(work: Path) -> dict[str, str]:
    """The secrets a restarted stack needs again: the hub's cookie secret (its sessions) and crypt key
    (the auth state in its database), and PostgreSQL's password; made for a new stack."""
    path = work / "state.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    kept = {
        "cookie_secret": secrets.token_hex(32),
        "crypt_key": secrets.token_hex(32),
        "pg_password": "pg-" + secrets.token_hex(12),
    }
    _write_private(path, kept)
    return kept


@contextlib.contextmanager
def running_stack(
    work: Path,
    users: list[User],
    *,
    fresh: bool = True,
    wheels: Mapping[str, bytes] = {},
    extra_config: str = "",
    env: Mapping[str, str] = {},
) -> Iterator[Stack]:
    """Start everything in `work`; stop everything, the pods too, on the way out.

    What a stack in `work` that did not stop left running is ended first (leftovers.py). `fresh`:
    `work` is emptied first; otherwise the homes, the database and the secrets stay (see the module's
    description). `users` are written to `work/users.json` (users.load_users reads them back).
    `extra_config` is appended to the operator's settings (EXTRA_CONFIG); `env` is added to the hub's
    environment (BERDL_* settings, for example), over this stack's own."""
    ended = end_leftovers(work, Podman())
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    log_dir, node_root = _log_dir(work), work / "node"
    _prepare_node(node_root, wheels)
    save_users(work / "users.json", users)
    leftovers = Leftovers(work)
    by_name = {u.name: u for u in users}
    kept = _kept_secrets(work)
    cookie_secret, crypt_key, pg_password = kept["cookie_secret"], kept["crypt_key"], kept["pg_password"]
    proxy_token = secrets.token_hex(32)
    metrics_token = secrets.token_hex(32)
    all_secrets = [cookie_secret, crypt_key, proxy_token, pg_password, metrics_token]
    all_secrets += [s for u in users for s in u.secrets]

    with (
        postgres_server(pg_password, base=work / "postgres", log_path=log_dir / "postgres.log") as postgres,
        standins(
            users, host_root=node_root, images=LOCAL_IMAGES, log_dir=log_dir, leftovers=leftovers
        ) as services,
    ):
        hub_port, proxy_port, proxy_api_port = free_port(), free_port(), free_port()
        hub_url = f"http://127.0.0.1:{hub_port}"
        proxy_cmd = proxy_command(proxy_port, proxy_api_port, hub_url)
        proxy_env = {**base_env(), "CONFIGPROXY_AUTH_TOKEN": proxy_token}
        proxy = start("configurable-http-proxy", proxy_cmd, proxy_env, log_dir / "proxy.log")
        leftovers.process(proxy)
        stack: Stack | None = None
        try:
            wait_for(f"http://127.0.0.1:{proxy_api_port}/api/routes", 30, proxy)
            (work / "kubeconfig").write_text(kube_config(services.api_url))
            (work / "extra_config.py").write_text(EXTRA_CONFIG + extra_config)
            (work / "hub").mkdir(exist_ok=True)
            hub_env = {
                **base_env(),
                **kbase_env(services.auth2_url),  # KBase login against the Auth2 stand-in
                "BERDL_HUB_PUBLIC_URL": f"http://127.0.0.1:{proxy_port}/",  # users reach it at the proxy
                "KUBECONFIG": str(work / "kubeconfig"),
                "JUPYTERHUB_COOKIE_SECRET": cookie_secret,
                "JUPYTERHUB_CRYPT_KEY": crypt_key,
                "JUPYTERHUB_DB_URL": postgres.url,
                "PGPASSWORD": postgres.password,
                "CONFIGPROXY_API_URL": f"http://127.0.0.1:{proxy_api_port}",
                "CONFIGPROXY_AUTH_TOKEN": proxy_token,
                "BERDL_HUB_METRICS_TOKEN": metrics_token,
                "BERDL_HUB_BIND_URL": hub_url,
                "BERDL_HUB_CONNECT_URL": hub_url,  # the pods share the host's network
                "BERDL_HUB_EXTRA_CONFIG": str(work / "extra_config.py"),
                "BERDL_IDLE_TIMEOUT": "0",
                "BERDL_NOTEBOOK_IMAGE": HUB_NOTEBOOK_IMAGE,
                "BERDL_INIT_IMAGE": HUB_INIT_IMAGE,
                "SPARK_CLUSTER_MANAGER_API_URL": services.spark_url,
                "GOVERNANCE_API_URL": services.governance_url,
                **notebook_settings(),
                **env,
            }
            stack = Stack(
                work=work,
                users=by_name,
                standins=services,
                public_url=f"http://127.0.0.1:{proxy_port}",
                hub_url=hub_url,
                hub=_start_hub(work, hub_env, log_dir / "hub.log", leftovers),
                proxy=proxy,
                node_root=node_root,
                log_dir=log_dir,
                secrets=all_secrets,
                leftovers=leftovers,
                leftovers_ended=ended,
                hub_env=hub_env,
                proxy_cmd=proxy_cmd,
                proxy_env=proxy_env,
                metrics_token=metrics_token,
                prometheus_config=prometheus.write_config(work / "prometheus", hub_url, metrics_token),
            )
            yield stack
        finally:
            if stack is not None:
                stack.hub.stop()
                proxy = stack.proxy
            proxy.stop()
    # Stopped as it should: nothing is left for the next start to end.
    (work / RECORD).unlink(missing_ok=True)
