"""What the load test reads of the running stack while the users come and go: the proxy's routes, the
peak memory of the hub and the proxy, the hub's event-loop histogram. A thread samples every second.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from localhub.stack import Stack

LOOP_METRIC = "jupyterhub_event_loop_interval_seconds_bucket"
SLOW_LOOP = "Event loop was unresponsive"


def peak_memory_kib(pid: int) -> int | None:
    """The process's peak resident memory (VmHWM), None once it has ended."""
    with contextlib.suppress(OSError):
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
        return int(found[1]) if found else None
    return None


def loop_buckets(metrics_text: str) -> dict[str, float]:
    """The event-loop histogram's cumulative buckets, by their bound ("0.05", ..., "+Inf")."""
    buckets = {}
    for line in metrics_text.splitlines():
        if line.startswith(LOOP_METRIC + "{"):
            bound = re.search(r'le="([^"]+)"', line)
            if bound:
                buckets[bound[1]] = float(line.rsplit(" ", 1)[1])
    return buckets


def added_buckets(by_process: dict[int, dict[str, float]]) -> list[list[Any]]:
    """The histograms of every hub process of the run added up, in the order of their bounds."""
    total: dict[str, float] = {}
    for buckets in by_process.values():
        for bound, count in buckets.items():
            total[bound] = total.get(bound, 0.0) + count
    ordered = sorted(total, key=lambda b: float("inf") if b == "+Inf" else float(b))
    return [[b if b == "+Inf" else float(b), total[b]] for b in ordered]


class Sampler:
    """Samples the stack every `every` seconds on a thread of its own, until `stop()`."""

    def __init__(self, stack: Stack, every: float = 1.0) -> None:
        self.stack = stack
        self.every = every
        self.samples: list[dict[str, Any]] = []
        #: The last histogram each hub process answered (a new hub starts from zero).
        self.loops: dict[int, dict[str, float]] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.sample()
        self._stopped.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stopped.wait(self.every):
            self.sample()

    def sample(self) -> None:
        stack = self.stack
        hub, proxy = stack.hub.popen.pid, stack.proxy.popen.pid
        routes = None
        with contextlib.suppress(httpx.HTTPError, ValueError):
            routes = len([path for path in stack.proxy_routes() if path != "/"])
        self.samples.append(
            {
                "at": time.time(),
                "routes": routes,
                "hub_pid": hub,
                "hub_hwm_kib": peak_memory_kib(hub),
                "proxy_pid": proxy,
                "proxy_hwm_kib": peak_memory_kib(proxy),
            }
        )
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(
                f"{stack.hub_url}/hub/metrics",
                headers={"Authorization": f"token {stack.metrics_token}"},
                timeout=5,
            )
            if answer.status_code == 200:
                self.loops[hub] = loop_buckets(answer.text)

    def loop(self) -> dict[str, Any]:
        warnings = sum(path.read_text(errors="replace").count(SLOW_LOOP) for path in self._hub_logs())
        return {"buckets": added_buckets(self.loops), "slow_warnings": warnings}

    def _hub_logs(self) -> list[Path]:
        return sorted(self.stack.log_dir.glob("hub*.log"))
