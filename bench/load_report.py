"""The load test's report, computed from what the run recorded: a pure function of its inputs, so that a
small fixture tests it (tests/test_load_report.py).

Inputs, all plain JSON:

- `stats`: locust's own statistics (load_users.locust_stats): each step's attempts and failures, and the
  failures by kind;
- `timeline`: every user's steps (load_users.py writes them): `{"user", "step", "start", "end", "ok",
  "kind"}`, and one `{"user", "step": "pressed", "start"}` when the user presses Start;
- `faults`: when the faults began and ended (`{"started", "ended", ...}`), or None for a run without;
- `samples`: what the orchestrator read every second: the proxy's route count, the hub's and the
  proxy's peak memory so far (VmHWM, KiB), with their pids (a restarted hub is another process);
- `loop`: the hub's `jupyterhub_event_loop_interval_seconds` histogram, the buckets of every hub process
  of the run added up: `{"buckets": [[le, cumulative count], ...]}` (le "+Inf" last), and the number of
  "Event loop was unresponsive" warnings in the hub's logs;
- `leftovers`: what was left once every user had stopped (pods, Secrets, clusters, routes, servers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """The nearest-rank percentile (the smallest value with at least `fraction` of them at or below it)."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def histogram_percentile(buckets: list[list[Any]], fraction: float) -> float | None:
    """The upper bound of the bucket holding that fraction of a Prometheus histogram's observations;
    infinity when it is past the last finite bound."""
    if not buckets:
        return None
    total = float(buckets[-1][1])
    if total == 0:
        return None
    for bound, cumulative in buckets:
        if float(cumulative) >= fraction * total:
            return float(bound)
    return math.inf


def _by_user(timeline: list[Record]) -> dict[str, list[Record]]:
    users: dict[str, list[Record]] = {}
    for record in timeline:
        users.setdefault(record["user"], []).append(record)
    return users


def _first(records: list[Record], step: str, *, after: float = -math.inf) -> Record | None:
    """The first successful `step` that began at or after `after`."""
    found = [r for r in records if r["step"] == step and r.get("ok") and r["start"] >= after]
    return min(found, key=lambda r: r["end"]) if found else None


def _pressed(records: list[Record]) -> float | None:
    return next((r["start"] for r in records if r["step"] == "pressed"), None)


def journeys(timeline: list[Record]) -> dict[str, dict[str, Any]]:
    """Each user's journey: when Start was pressed, when the kernel first answered, whether the user
    stopped their server at the end."""
    result = {}
    for user, records in _by_user(timeline).items():
        pressed = _pressed(records)
        answered = _first(records, "probe")
        stopped = _first(records, "stop")
        result[user] = {
            "pressed": pressed,
            "answered": None if answered is None else answered["end"],
            "stopped": None if stopped is None else stopped["end"],
            "failed_starts": sum(
                1
                for r in records
                if r["step"] == "progress" and not r.get("ok") and "start failed" in r["kind"]
            ),
        }
    return result


def fault_outcome(timeline: list[Record], faults: Record) -> dict[str, Any]:
    """Who was running and who was starting when the faults began, and what became of them.

    Running: the kernel had answered and the server was not stopped. Lost: running, and no cell answered
    after the faults ended. Starting: Start pressed (before or during the faults) and no answer yet when
    they began. Served again: each of those users' first answer begun after the faults began; the
    seconds until all were served are from the faults' start to the last of those answers."""
    began, ended = float(faults["started"]), float(faults["ended"])
    by_user = _by_user(timeline)
    running, starting, lost, came_up, restarted = [], [], [], [], []
    served_again: list[float] = []
    for user, records in by_user.items():
        pressed = _pressed(records)
        first = _first(records, "probe")
        stopped = _first(records, "stop")
        if first is not None and first["end"] < began and (stopped is None or stopped["end"] > began):
            running.append(user)
            if _first(records, "probe", after=ended) is None:
                lost.append(user)
        elif pressed is not None and pressed <= ended and (first is None or first["end"] >= began):
            starting.append(user)
            if first is not None:
                came_up.append(user)
            if journeys(records)[user]["failed_starts"]:
                restarted.append(user)
        else:
            continue
        again = _first(records, "probe", after=began)
        if again is not None:
            served_again.append(again["end"])
    affected = len(running) + len(starting)
    all_served = affected > 0 and len(served_again) == affected
    return {
        "running_at_faults": len(running),
        "lost": len(lost),
        "starting_at_faults": len(starting),
        "starting_came_up": len(came_up),
        "starting_with_a_failed_start": len(restarted),
        "seconds_until_all_served_again": round(max(served_again) - began, 1) if all_served else None,
        "fault_seconds": round(ended - began, 1),
    }


def _peak(samples: list[Record], field: str) -> float | None:
    values = [s[field] for s in samples if s.get(field) is not None]
    return max(values) if values else None


def report(
    users: int,
    stats: Record,
    timeline: list[Record],
    faults: Record | None,
    samples: list[Record],
    loop: Record,
    leftovers: Record,
) -> Record:
    """The table of bench/README.md, as one JSON document."""
    every = journeys(timeline)
    times = [j["answered"] - j["pressed"] for j in every.values() if j["answered"] and j["pressed"]]
    completed = [u for u, j in every.items() if j["answered"] is not None and j["stopped"] is not None]
    failures = {f"{e['step']}: {e['kind']}": e["occurrences"] for e in stats["errors"]}
    loop_p95 = histogram_percentile(loop["buckets"], 0.95)
    hub_kib, proxy_kib = _peak(samples, "hub_hwm_kib"), _peak(samples, "proxy_hwm_kib")
    start_p50, start_p95 = percentile(times, 0.5), percentile(times, 0.95)
    return {
        "users": users,
        "served": len([j for j in every.values() if j["answered"] is not None]),
        "failed_users": users - len(completed),
        "attempts": sum(s["attempts"] for s in stats["steps"]),
        "failures_by_kind": dict(sorted(failures.items())),
        "start_to_answer_p50_s": None if start_p50 is None else round(start_p50, 1),
        "start_to_answer_p95_s": None if start_p95 is None else round(start_p95, 1),
        "event_loop_interval_p95_s": loop_p95,
        "slow_loop_warnings": loop["slow_warnings"],
        "routes_at_peak": _peak(samples, "routes"),
        "hub_peak_mib": None if hub_kib is None else round(hub_kib / 1024),
        "proxy_peak_mib": None if proxy_kib is None else round(proxy_kib / 1024),
        "faults": None if faults is None else fault_outcome(timeline, faults),
        "leftovers": leftovers,
    }


def _failures(found: Record) -> str:
    kinds = found["failures_by_kind"]
    return "; ".join(f"{kind} x{count}" for kind, count in kinds.items()) or "none"


def _value(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def table(phases: dict[str, Record]) -> str:
    """The report of each phase as the Markdown table of bench/README.md, a column a phase."""
    names = list(phases)
    rows: list[tuple[str, Any]] = [
        ("users", lambda f: f["users"]),
        ("users who did not finish (failed users)", lambda f: f["failed_users"]),
        ("failed attempts, by kind (of all attempts)", lambda f: f"{_failures(f)} (of {f['attempts']})"),
        ("Start to the kernel's answer, p50", lambda f: _value(f["start_to_answer_p50_s"], " s")),
        ("Start to the kernel's answer, p95", lambda f: _value(f["start_to_answer_p95_s"], " s")),
        ("hub's event-loop interval, p95", lambda f: _value(f["event_loop_interval_p95_s"], " s")),
        ("hub's slow-loop warnings (≥ 1 s)", lambda f: f["slow_loop_warnings"]),
        ("proxy's routes at the peak", lambda f: _value(f["routes_at_peak"])),
        ("hub's peak memory (VmHWM)", lambda f: _value(f["hub_peak_mib"], " MiB")),
        ("proxy's peak memory (VmHWM)", lambda f: _value(f["proxy_peak_mib"], " MiB")),
        ("running at the faults / lost", lambda f: _fault(f, "running_at_faults", "lost")),
        ("starting at the faults / came up", lambda f: _fault(f, "starting_at_faults", "starting_came_up")),
        (
            "seconds from the faults' start until all were served",
            lambda f: _fault(f, "seconds_until_all_served_again"),
        ),
        ("left behind (pods, Secrets, clusters, routes, servers)", _left),
    ]
    lines = [f"| figure | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    for label, cell in rows:
        lines.append(f"| {label} | {' | '.join(str(cell(phases[n])) for n in names)} |")
    return "\n".join(lines)


def _fault(found: Record, *fields: str) -> str:
    faults = found["faults"]
    return "-" if faults is None else " / ".join(_value(faults[field]) for field in fields)


def _left(found: Record) -> str:
    left = found["leftovers"]
    order = ("pods", "pods_on_node", "secrets", "spark_clusters", "routes", "servers")
    return ", ".join(_value(left.get(k)) for k in order)
