"""A real Prometheus (Debian's `prometheus`) for the local stack: deploy/monitoring's scrape job and
alerting rules, pointed at the stack's hub on 127.0.0.1.

`scrape_config()` is deploy/monitoring/prometheus-scrape.yaml's job with the one change this machine
needs: a static target (the stack's hub) and the token file it writes, instead of Kubernetes' service
discovery and the Secret mounted in a Prometheus pod. `running_prometheus()` starts Prometheus on a free
port of 127.0.0.1 with it, and stops it with its process group.
"""

from __future__ import annotations

import contextlib
import copy
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from localhub.procs import Process, base_env, free_port, start, wait_for
from localhub.tools import REPO, find_tool

MONITORING = REPO / "deploy" / "monitoring"
SCRAPE_CONFIG = MONITORING / "prometheus-scrape.yaml"
ALERT_RULES = MONITORING / "berdl-alerts.yaml"
#: Seconds between scrapes (and rule evaluations) here: a test waits for the next scrape, not a minute.
LOCAL_INTERVAL = "2s"


def scrape_config(
    hub_url: str, token_file: Path, rule_files: Sequence[Path] = (ALERT_RULES,)
) -> dict[str, Any]:
    """A Prometheus configuration: deploy/monitoring's job for the hub at `hub_url`, its token in
    `token_file`, and `rule_files`."""
    deployed = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = deployed["scrape_configs"]
    job = copy.deepcopy(job)
    del job["kubernetes_sd_configs"], job["relabel_configs"]
    job["authorization"]["credentials_file"] = str(token_file)
    job["scrape_interval"] = job["scrape_timeout"] = LOCAL_INTERVAL
    job["static_configs"] = [{"targets": [urlsplit(hub_url).netloc], "labels": {"namespace": "local"}}]
    return {
        "global": {"scrape_interval": LOCAL_INTERVAL, "evaluation_interval": LOCAL_INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [job],
    }


def write_config(folder: Path, hub_url: str, token: str) -> Path:
    """The configuration and the token file (mode 0600) in `folder`; returns the configuration's path."""
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "hub-metrics-token"
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(token)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(scrape_config(hub_url, token_file), sort_keys=False))
    return path


class PrometheusError(RuntimeError):
    """Prometheus answered an error, or did not do what was waited for."""


@dataclass
class Prometheus:
    url: str
    process: Process

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query (`data.result`); fails on an error answer."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        if answer.status_code != 200:
            raise PrometheusError(f"{promql}: {answer.status_code} {answer.text[:500]}")
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The value of a query that gives one series (None: no series)."""
        result = self.query(promql)
        if len(result) > 1:
            raise PrometheusError(f"{promql}: {len(result)} series, not one")
        return float(result[0]["value"][1]) if result else None

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", timeout=10)
        if answer.status_code != 200:
            raise PrometheusError(f"{path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()["data"]

    def scraped_since(self, moment: float) -> bool:
        """Whether the hub's target was scraped, successfully, after `moment` (seconds since the epoch)."""
        for target in self.get("/api/v1/targets")["activeTargets"]:
            if target["health"] == "up" and _epoch(target["lastScrape"]) > moment:
                return True
        return False

    def wait_for_scrape(self, timeout: float = 60) -> None:
        """Until a scrape that began after now has ended."""
        now = time.time()
        deadline = time.monotonic() + timeout
        while not self.scraped_since(now):
            if time.monotonic() > deadline:
                raise PrometheusError(f"Prometheus did not scrape the hub in {timeout} s")
            time.sleep(0.5)


_RFC3339 = re.compile(r"^([^.Z+]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _epoch(rfc3339: str) -> float:
    """Seconds since the epoch of one of Prometheus's times (nanoseconds; Python reads microseconds)."""
    match = _RFC3339.match(rfc3339)
    if match is None:
        return 0.0
    whole, fraction, zone = match.groups()
    text = f"{whole}.{(fraction or '0')[:6]}{zone.replace('Z', '+00:00')}"
    return datetime.fromisoformat(text).timestamp()


@contextlib.contextmanager
def running_prometheus(config: Path, folder: Path) -> Iterator[Prometheus]:
    """Prometheus with `config`, its data and log in `folder`, on a free port of 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        find_tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    process = start("prometheus", command, base_env(), folder / "prometheus.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/-/ready", 60, process, status=200)
        yield Prometheus(url, process)
    finally:
        process.stop()
