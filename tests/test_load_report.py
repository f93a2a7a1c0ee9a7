"""The load test's report (bench/load_report.py) on a small timeline whose answers are known by hand."""

from __future__ import annotations

import math
from typing import Any

from bench.load_report import fault_outcome, histogram_percentile, percentile, report, table


def step(
    user: str, name: str, start: float, end: float, ok: bool = True, kind: str | None = None
) -> dict[str, Any]:
    return {"user": user, "step": name, "start": start, "end": end, "ok": ok, "kind": kind}


def journey(user: str, pressed: float, answered: float, stopped: float) -> list[dict[str, Any]]:
    return [
        step(user, "login", pressed - 1, pressed),
        {"user": user, "step": "pressed", "start": pressed},
        step(user, "start", pressed, pressed + 0.1),
        step(user, "progress", pressed + 0.1, answered - 1),
        step(user, "kernel", answered - 1, answered - 0.5),
        step(user, "probe", answered - 0.5, answered),
        step(user, "stop", stopped - 1, stopped),
    ]


# Faults from t=100 to t=120. ann was running (answered at 50) and answers again at 104; bob was running
# and never answers again (lost); cy pressed at 95, her first start failed, and she came up at 130; dee
# came after the faults, and is counted in the load but not among those the faults met.
FAULTS = {"started": 100.0, "ended": 120.0}
TIMELINE = [
    *journey("ann", 10, 50, 200),
    step("ann", "probe", 101, 101.5, ok=False, kind="HTTP connection failed"),
    step("ann", "probe", 103.5, 104),
    step("ann", "probe", 125, 125.2),
    *[r for r in journey("bob", 20, 60, 210) if r["step"] != "stop"],
    step("bob", "probe", 121, 122, ok=False, kind="HTTP 503 on GET /user/{name}/"),
    {"user": "cy", "step": "pressed", "start": 95.0},
    step("cy", "progress", 95.1, 110, ok=False, kind="start failed (the progress stream said so)"),
    step("cy", "start", 112, 112.1),
    step("cy", "progress", 112.1, 128),
    step("cy", "probe", 129, 130),
    step("cy", "stop", 219, 220),
    *journey("dee", 140, 160, 230),
]
STATS = {
    "steps": [
        {"name": "probe", "attempts": 9, "failures": 2},
        {"name": "progress", "attempts": 5, "failures": 1},
    ],
    "errors": [
        {"step": "probe", "kind": "HTTP connection failed", "occurrences": 1},
        {"step": "probe", "kind": "HTTP 503 on GET /user/{name}/", "occurrences": 1},
        {"step": "progress", "kind": "start failed (the progress stream said so)", "occurrences": 1},
    ],
}
LOOP = {"buckets": [[0.05, 90.0], [0.1, 96.0], [1.0, 100.0], ["+Inf", 100.0]], "slow_warnings": 0}
SAMPLES = [
    {"routes": 1, "hub_hwm_kib": 102400, "proxy_hwm_kib": 51200},
    {"routes": 3, "hub_hwm_kib": 204800, "proxy_hwm_kib": None},  # the proxy restarting
    {"routes": None, "hub_hwm_kib": None, "proxy_hwm_kib": 40960},
]
NOTHING_LEFT = {"pods": 0, "secrets": 0, "spark_clusters": 0, "routes": 0, "servers": 0}


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.95) == 4.0
    assert percentile([], 0.5) is None


def test_the_histogram_percentile_is_the_bound_of_its_bucket() -> None:
    assert histogram_percentile(LOOP["buckets"], 0.95) == 0.1
    assert histogram_percentile(LOOP["buckets"], 0.5) == 0.05
    assert histogram_percentile([[0.05, 1.0], ["+Inf", 10.0]], 0.95) == math.inf
    assert histogram_percentile([], 0.95) is None


def test_the_faults_outcome_counts_who_was_running_lost_and_starting() -> None:
    outcome = fault_outcome(TIMELINE, FAULTS)

    assert outcome == {
        "running_at_faults": 2,  # ann and bob
        "lost": 1,  # bob
        "starting_at_faults": 1,  # cy
        "starting_came_up": 1,
        "starting_with_a_failed_start": 1,
        # bob, lost, is never served again: no time until all were
        "seconds_until_all_served_again": None,
        "fault_seconds": 20.0,
    }


def test_the_seconds_until_all_served_again_run_to_the_last_users_answer() -> None:
    without_bob = [r for r in TIMELINE if r["user"] != "bob"]

    outcome = fault_outcome(without_bob, FAULTS)

    assert outcome["lost"] == 0
    assert outcome["seconds_until_all_served_again"] == 30.0  # cy's answer at 130, faults from 100


def test_the_report_has_every_figure_of_the_table() -> None:
    found = report(4, STATS, TIMELINE, FAULTS, SAMPLES, LOOP, NOTHING_LEFT)

    assert found["users"] == 4
    assert found["served"] == 4
    assert found["failed_users"] == 1  # bob never stopped
    assert found["attempts"] == 14
    assert found["failures_by_kind"] == {
        "probe: HTTP 503 on GET /user/{name}/": 1,
        "probe: HTTP connection failed": 1,
        "progress: start failed (the progress stream said so)": 1,
    }
    # from Start to the first answer: ann 40, bob 40, cy 35, dee 20
    assert found["start_to_answer_p50_s"] == 35.0
    assert found["start_to_answer_p95_s"] == 40.0
    assert found["event_loop_interval_p95_s"] == 0.1
    assert found["routes_at_peak"] == 3
    assert (found["hub_peak_mib"], found["proxy_peak_mib"]) == (200, 50)
    assert found["faults"]["lost"] == 1
    assert found["leftovers"] == NOTHING_LEFT


def test_a_run_without_faults_has_no_fault_outcome() -> None:
    calm = [r for r in TIMELINE if r["user"] in ("ann", "dee") and r.get("ok", True)]

    found = report(2, {"steps": [], "errors": []}, calm, None, SAMPLES, LOOP, NOTHING_LEFT)

    assert found["faults"] is None
    assert found["failed_users"] == 0
    assert found["failures_by_kind"] == {}


def test_the_table_has_a_row_a_figure_and_a_column_a_phase() -> None:
    phases = {
        "load": report(
            2, STATS, [r for r in TIMELINE if r["user"] in ("ann", "dee")], None, SAMPLES, LOOP, NOTHING_LEFT
        ),
        "faults": report(4, STATS, TIMELINE, FAULTS, SAMPLES, LOOP, NOTHING_LEFT),
    }

    lines = table(phases).splitlines()

    assert lines[0] == "| figure | load | faults |"
    assert len(lines) == 2 + 14
    assert all(line.count("|") == 4 for line in lines)
    assert "| running at the faults / lost | - | 2 / 1 |" in lines
