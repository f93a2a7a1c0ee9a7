"""A real JupyterHub, loading hub/jupyterhub_config.py with an operator's extra config, refuses spawner
settings that do not fit together before it binds a port: exit status 2, every value named."""

from __future__ import annotations

from pathlib import Path

from localhub.procs import free_port
from tests.hub.test_hub import EXTRA_CONFIG, hub_env, run_hub_expecting_refusal


def test_a_start_timeout_that_cannot_hold_a_start_is_refused_at_hub_load(tmp_path: Path) -> None:
    env = hub_env(tmp_path, free_port(), free_port())
    env["SPARK_CLUSTER_MANAGER_API_URL"] = "http://127.0.0.1:9/spark"
    env["JUPYTERHUB_DB_URL"] = f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    (tmp_path / "extra_config.py").write_text(EXTRA_CONFIG + "c.KubeSpawner.start_timeout = 120\n")
    code, output = run_hub_expecting_refusal(env, tmp_path)
    assert code == 2, output
    assert (
        "start_timeout 120 s must be longer than spark_create_timeout 180 s + init_time_budget 150 s = 330 s"
        in output
    )
    assert list((tmp_path / "hub-cwd").iterdir()) == []
