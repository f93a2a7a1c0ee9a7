"""berdl-init's run in a start, as the kubelet reports its initContainer in the pod's status.

The kubelet gives each ended container `state.terminated` (or `lastState.terminated`, once it restarts
it): `exitCode`, `reason`, `startedAt` and `finishedAt` (whole seconds), and `message`, what the
container wrote to its termination-message file. berdl-init writes one JSON line there
(berdl_init.termination, the two programs' contract): its result, exit status, counts and its own time.
An init image from before that summary, or a run killed before it wrote it (out of memory), leaves
either nothing or, for a failure under `FallbackToLogsOnError`, the tail of its log: then the exit
status decides (`failed`, else `unknown`) and the kubelet's times give the duration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import init_summary, metrics
from .manifest import INIT_CONTAINER_NAME


@dataclass(frozen=True)
class InitRun:
    result: str  # one of metrics.INIT_RESULTS
    exit_status: int
    seconds: float | None  # None when neither berdl-init nor the kubelet says
    error: str | None = None  # berdl-init's own line about a failure, when its summary has one


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _kubelet_seconds(terminated: Mapping[str, Any]) -> float | None:
    started, finished = _time(terminated.get("startedAt")), _time(terminated.get("finishedAt"))
    if started is None or finished is None or finished < started:
        return None
    return (finished - started).total_seconds()


def from_terminated(terminated: Mapping[str, Any]) -> InitRun:
    """The run one `terminated` state describes."""
    code = terminated.get("exitCode")
    exit_status = code if isinstance(code, int) else -1
    summary = init_summary.parse(str(terminated.get("message") or "")) or {}
    result = summary.get("result")
    if result not in metrics.INIT_RESULTS:
        result = "unknown"
    if exit_status != 0:
        result = "failed"  # whatever it wrote: the kubelet saw it fail
    seconds = summary.get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        seconds = _kubelet_seconds(terminated)
    error = summary.get("error")
    return InitRun(str(result), exit_status, seconds, error if isinstance(error, str) else None)


def latest_run(pod: Mapping[str, Any] | None) -> InitRun | None:
    """berdl-init's last ended run in `pod`'s status (a retried one is in `lastState`), or None while
    none has ended."""
    for status in ((pod or {}).get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != INIT_CONTAINER_NAME:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated")
            if terminated:
                return from_terminated(terminated)
    return None


def record(pod: Mapping[str, Any] | None, profile: str) -> InitRun | None:
    """Count berdl-init's run of this start in the metrics; returns it (None: no run ended)."""
    run = latest_run(pod)
    if run is not None:
        metrics.init_run(profile, run.result, run.exit_status, run.seconds)
    return run
