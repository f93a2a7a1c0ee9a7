"""The local stack's Prometheus configuration (localhub/prometheus.py): deploy/monitoring's scrape job with
a static target and a token file instead of Kubernetes' discovery and a mounted Secret, which Debian's
`promtool check config` accepts with the alerting rules it loads."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import yaml

from localhub.prometheus import SCRAPE_CONFIG, write_config
from tests.conftest import require_tool


def test_the_stacks_configuration_is_deploys_job_pointed_at_the_local_hub(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:43210", "t" * 64)
    (local,) = yaml.safe_load(path.read_text())["scrape_configs"]
    (deployed,) = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    for key in ("job_name", "metrics_path", "scheme"):
        assert local[key] == deployed[key], key
    assert local["authorization"]["type"] == deployed["authorization"]["type"]
    assert local["static_configs"][0]["targets"] == ["127.0.0.1:43210"]
    token = Path(local["authorization"]["credentials_file"])
    assert token.read_text() == "t" * 64
    assert stat.S_IMODE(token.stat().st_mode) == 0o600

    result = subprocess.run(
        [require_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout
