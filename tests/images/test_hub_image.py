"""The hub image (Dockerfile.hub, built here on the local Debian base instead of the official JupyterHub
image) runs hub/jupyterhub_config.py with BERDLSpawner, the way deploy/hub-deployment.yaml runs it:
as uid 1000, on a read-only root filesystem with /tmp and the database volume writable, talking to a
configurable-http-proxy that runs apart (the real one, from npm)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localhub.podman import HUB_IMAGE, Podman
from localhub.procs import free_port, wait_for
from localhub.tools import REPO
from tests.conftest import require_tool

pytestmark = pytest.mark.slow

CONTAINER = "berdl-hub-image-test"


@pytest.fixture(scope="module")
def hub_image(podman: Podman) -> Podman:
    podman.build_hub_image()
    return podman


def test_the_hub_refuses_to_start_without_its_settings(hub_image: Podman) -> None:
    result = hub_image("run", "--rm", HUB_IMAGE, check=False)
    assert result.returncode == 2
    for variable in ("JUPYTERHUB_COOKIE_SECRET", "JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN"):
        assert variable in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    """configurable-http-proxy on the host: (token, public port, API port)."""
    chp = require_tool(str(REPO / "node_modules" / ".bin" / "configurable-http-proxy"))
    node = Path(require_tool("node")).parent  # .venv/bin, where scripts/setup puts it
    token = secrets.token_hex(32)
    public, api = free_port(), free_port()
    log = (tmp_path / "chp.log").open("w")
    process = subprocess.Popen(
        [chp, "--ip=127.0.0.1", f"--port={public}", "--api-ip=127.0.0.1", f"--api-port={api}"],
        env={"CONFIGPROXY_AUTH_TOKEN": token, "PATH": f"{node}:/usr/local/bin:/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield token, public, api
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_the_hub_runs_as_deployed_with_a_separate_proxy(
    hub_image: Podman, proxy: tuple[str, int, int], tmp_path: Path
) -> None:
    token, public, api = proxy
    hub_port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # fsGroup makes the claim writable in a cluster
    hub_secrets = {
        "JUPYTERHUB_COOKIE_SECRET": secrets.token_hex(32),
        "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        "CONFIGPROXY_AUTH_TOKEN": token,
    }
    secret_files = tmp_path / "hub-secrets"  # the Secret's volume: root's files, group fsGroup, 0440
    secret_files.mkdir()
    for name, value in hub_secrets.items():
        (secret_files / name).write_text(value)
        os.chown(secret_files / name, 0, 1000)
        (secret_files / name).chmod(0o440)
    env = {
        "CONFIGPROXY_API_URL": f"http://127.0.0.1:{api}",
        "BERDL_HUB_BIND_URL": f"http://127.0.0.1:{hub_port}",
        # The only authenticator installed in the image that needs no outside service; dev mode allows it.
        "JUPYTERHUB_AUTHENTICATOR_CLASS": "dummy",
        "BERDL_HUB_DEV_MODE": "1",
        "BERDL_NOTEBOOK_IMAGE": "localhost/berdl-notebook:test",
        "BERDL_INIT_IMAGE": "localhost/berdl-init:test",
    }
    hub_image("rm", "--force", "--ignore", CONTAINER)
    hub_image(
        "run", "--detach", "--name", CONTAINER, "--network", "host",
        "--user", "1000:1000", "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{data}:/srv/jupyterhub/data",
        "--volume", f"{secret_files}:/etc/berdl/hub-secrets:ro",
        *[f"--env={name}={value}" for name, value in env.items()],
        HUB_IMAGE,
    )  # fmt: skip
    try:
        late = None
        try:  # through the proxy: the hub added its route
            wait_for(f"http://127.0.0.1:{public}/hub/health", 60, status=200)
        except TimeoutError as error:
            late = error
        logs = hub_image("logs", CONTAINER, check=False)
        assert late is None, f"{late}\n{logs.stdout}{logs.stderr}"
        assert "JupyterHub is now running" in logs.stderr
        assert "BERDLSpawner" in hub_image("exec", CONTAINER, "python3", "-c", _SPAWNER_CLASS).stdout
        assert (data / "jupyterhub.sqlite").stat().st_size > 0  # the database is on the volume
        environments = hub_image("exec", CONTAINER, "python3", "-c", _EVERY_ENVIRONMENT).stdout
        assert "BERDL_HUB_BIND_URL=" in environments  # the hub's, and the idle culler's
        for value in hub_secrets.values():
            assert value not in logs.stdout + logs.stderr
            assert value not in environments  # the secrets came from the files
    finally:
        hub_image("rm", "--force", "--ignore", CONTAINER)


# The spawner JupyterHub resolves for `spawner_class = "berdl"`: the entry point of the installed project.
_SPAWNER_CLASS = (
    "from importlib.metadata import entry_points; "
    "print(entry_points(group='jupyterhub.spawners')['berdl'].load().__name__)"
)

# Every process environment in the container, as /proc shows it to a process of the same user.
_EVERY_ENVIRONMENT = (
    "import glob; print(''.join(open(p, errors='replace').read() for p in glob.glob('/proc/[0-9]*/environ')))"
)
