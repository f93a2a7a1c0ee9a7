"""A real kernel, started by jupyter_client in a prepared home, leaves nothing for berdl-init to undo.

jupyter_client writes its connection file into ~/.jupyter/runtime and adds the sticky bit to that folder;
a berdl-init that checked the folder's mode for equality would chmod it back at every start.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TIMEOUT = 120


def berdl_init(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BERDL_")}
    env.update(BERDL_USER="alice", BERDL_UID=str(os.getuid()), BERDL_GID=str(os.getgid()))
    return subprocess.run(
        [sys.executable, "-m", "berdl_init", "--home", str(home), "--skip", "venv", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_a_kernel_started_by_jupyter_client_leaves_check_at_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_client.multikernelmanager import MultiKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    home = tmp_path / "home"
    assert berdl_init(home).returncode == 0
    runtime = home / ".jupyter/runtime"
    # Where the notebook image points Jupyter (images/notebook/10-berdl-jupyter-dirs.sh).
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(home / ".jupyter/data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(home / ".jupyter"))

    # As jupyter_server starts kernels: connection files in the runtime folder.
    kernels = MultiKernelManager(connection_dir=jupyter_runtime_dir())
    kernel_id = kernels.start_kernel(kernel_name="python3")
    try:
        client = kernels.get_kernel(kernel_id).client()
        client.start_channels()
        client.wait_for_ready(timeout=TIMEOUT)
        reply = client.execute_interactive("print(6 * 7)", timeout=TIMEOUT)
        client.stop_channels()
        assert reply["content"]["status"] == "ok"
        assert [path.name for path in runtime.iterdir()] == [f"kernel-{kernel_id}.json"]
        mode = stat.S_IMODE(runtime.stat().st_mode)
        assert mode & stat.S_ISVTX, f"jupyter_client left the runtime folder at {mode:o}"

        check = berdl_init(home, "--check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert stat.S_IMODE(runtime.stat().st_mode) == mode
    finally:
        kernels.shutdown_all(now=True)

    check = berdl_init(home, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
