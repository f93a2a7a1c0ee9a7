"""What a stack that did not stop (killed with SIGKILL, its machine's session gone) leaves running, ended
by the next stack started in the same folder.

The hub and the proxy run in sessions of their own and outlive the stack's process; the PostgreSQL
server is a daemon; podman keeps the pods the node played, and their secrets, while the API stand-in
that listed them is gone with the process. The stack writes down each process it starts and the node
each pod it plays (`leftovers.json` in the stack's folder), and `end_leftovers` ends what is still
there: a process only while its id still names the process that started at the time written down (a
process id used again by another program is left alone; its command line is no sure mark, as it reads
empty while the process is still being started).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from localhub.procs import Process, descendants, stop_postgres

RECORD = "leftovers.json"


def _started(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat's 22nd field); None when there
    is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


class Leftovers:
    """The written-down processes and pods of the stack in `work` (thread-safe: the node writes from the
    stand-ins' thread)."""

    def __init__(self, work: Path) -> None:
        self.path = work / RECORD
        self._lock = threading.Lock()
        self._record: dict[str, Any] = {"processes": [], "pods": {}}

    def process(self, process: Process) -> None:
        """A process the stack started (a hub, a proxy)."""
        pid = process.popen.pid
        with self._lock:
            self._record["processes"].append({"pid": pid, "started": _started(pid), "name": process.name})
            self._save()

    def pod(self, name: str, secrets: set[str]) -> None:
        """A pod the node is about to play, with the podman secrets it makes for it."""
        with self._lock:
            self._record["pods"][name] = sorted(secrets)
            self._save()

    def pod_removed(self, name: str) -> None:
        with self._lock:
            self._record["pods"].pop(name, None)
            self._save()

    def _save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._record))
        temporary.replace(self.path)


def end_leftovers(work: Path, podman: Any) -> list[str]:
    """End what a stack in `work` that did not stop left running; returns what was ended, one line each.

    `podman`: a localhub.podman.Podman."""
    ended: list[str] = []
    path = work / RECORD
    record: dict[str, Any] = {"processes": [], "pods": {}}
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(path.read_text())
    for entry in record.get("processes", []):
        pid, started = entry.get("pid"), entry.get("started")
        if pid and started is not None and _started(pid) == started:
            _end_tree(pid)
            ended.append(f"process {pid}: {entry.get('name')}")
    for name, secrets in record.get("pods", {}).items():
        if podman("pod", "exists", name, check=False).returncode == 0:
            ended.append(f"pod {name}")
        podman.remove_pod(name)
        for secret in secrets:
            podman.remove_secret(secret)
    if (work / "postgres" / "data" / "postmaster.pid").exists():
        stop_postgres(work / "postgres")
        ended.append("PostgreSQL")
    path.unlink(missing_ok=True)
    return ended


def _end_tree(pid: int) -> None:
    """SIGTERM to the process, its group and everything below it; SIGKILL to what is left after 10 s."""
    below = descendants(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        for child in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_started(p) is not None for p in [pid, *below]):
            time.sleep(0.1)
