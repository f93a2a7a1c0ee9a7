"""deploy/monitoring/grafana-dashboard.json, checked as Grafana reads it: one Prometheus data source chosen
by the viewer, panels that do not overlap, each query naming only series the hub serves, and the views
an operator looks for (spawn time by part, failures, active users). tests/e2e/test_journey.py checks in a
real Prometheus that each of those series exists after a spawn."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localhub.prometheus import MONITORING
from tests.deploy.monitoring import hub_series, series_named

DASHBOARD = MONITORING / "grafana-dashboard.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_panel_reads_the_chosen_prometheus_and_has_a_place_of_its_own(
    dashboard: dict[str, Any],
) -> None:
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(place["x"], place["x"] + place["w"])
            for y in range(place["y"], place["y"] + place["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_every_query_names_only_series_the_hub_serves(dashboard: dict[str, Any]) -> None:
    served = hub_series() | {"up"}
    for expression in expressions(dashboard):
        named = series_named(expression)
        assert named, expression
        assert named <= served, f"{expression}: {sorted(named - served)}"


def test_it_shows_spawn_time_by_part_failures_and_active_users(dashboard: dict[str, Any]) -> None:
    by_title = {panel["title"]: panel for panel in dashboard["panels"]}
    parts = " ".join(t["expr"] for t in by_title["Spawn time by part (average)"]["targets"])
    assert "berdl_spawn_part_duration_seconds_sum" in parts
    assert "sum by (part)" in parts
    assert "jupyterhub_server_spawn_duration_seconds_sum" in parts
    named = set().union(*(series_named(e) for e in expressions(dashboard)))
    assert {
        "jupyterhub_server_spawn_duration_seconds_count",  # spawn failures
        "berdl_spark_cluster_starts_total",
        "berdl_init_runs_total",
        "jupyterhub_active_users",
    } <= named
    # Every one of BERDL's metrics has its panel.
    import berdl_hub.metrics  # noqa: F401  (registers them)
    from prometheus_client import REGISTRY

    families = {family.name for family in REGISTRY.collect() if family.name.startswith("berdl_")}
    assert len(families) >= 10
    for family in families:
        assert any(name.startswith(family) for name in named), family
