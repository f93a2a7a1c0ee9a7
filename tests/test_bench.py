"""The benchmark command runs end to end (quick mode): it must not rot. No figure is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localhub.browser import CHROMIUM
from localhub.podman import Podman
from tests.conftest import require_tool, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
#: Where bench/under_load.py keeps the last run's records (its WORK).
LOAD_WORK = ROOT / ".work" / "bench-load"
BERDL_VARIANTS = {"new home", "prepared home"}
BASELINES = {"plain", "chown"}


def run_quick(output: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`bench/run.py --quick ARGS` and the JSON it wrote, after checking that it exited 0."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            *args,
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "written to" in result.stdout
    document = json.loads(output.read_text())
    assert document["quick"] is True
    for figure in document["figures"]:
        assert figure["value"] > 0, figure
        assert isinstance(figure["met"], bool)
        assert figure["name"] in result.stdout  # in the table
    return result, document


@pytest.mark.slow
def test_the_benchmark_runs_in_quick_mode_and_writes_every_figure(tmp_path: Path) -> None:
    require_tool("strace")

    # The time to JupyterLab needs the whole stack: the next test runs it.
    _, document = run_quick(tmp_path / "figures.json", "--parts", "berdl-init", "spawner")

    names = [figure["name"] for figure in document["figures"]]
    assert len(names) == 9, names
    assert any(name.startswith("warm run, wall median") for name in names)
    assert any(name.startswith("file-system calls under the home") for name in names)


@pytest.mark.slow
def test_the_time_to_jupyterlab_bench_times_and_splits_each_variant(podman: Podman, tmp_path: Path) -> None:
    """On the images the session's `podman` fixture built (--reuse-images: none built again)."""
    for tool in ("node", "runuser"):
        require_tool(tool)
    if not CHROMIUM.exists():
        skip_or_fail("Debian's chromium is not installed (scripts/setup installs it)")

    _, document = run_quick(tmp_path / "figures.json", "--parts", "ttl", "--reuse-images")

    names = [figure["name"] for figure in document["figures"]]
    assert len(names) == 3, names
    assert all(name.startswith("time to JupyterLab, ") for name in names), names
    starts = document["time_to_lab_starts"]
    assert sorted(start["variant"] for start in starts) == sorted(BERDL_VARIANTS | BASELINES)
    for start in starts:
        parts = [start[part] for part in ("hub", "node", "init", "notebook", "browser")]
        assert min(parts) >= 0, start  # the clocks of the browser, the API and podman agree
        assert start["browser"] < start["notebook"], start
        # berdl-init ran in BERDL's pods only; the root hook's chown -R in the chown baseline only.
        assert (start["init"] > 0) == (start["variant"] in BERDL_VARIANTS), start
        assert (start["chown"] is not None and start["chown"] > 0) == (start["variant"] == "chown"), start


@pytest.mark.slow
def test_the_load_test_serves_three_users_with_and_without_faults(podman: Podman, tmp_path: Path) -> None:
    """`--parts load --quick`: three simulated users (locust) through the whole stack, then the same three
    with the proxy and the hub restarted in the middle; on the session's images (--reuse-images). Shape
    and outcomes only, never a time."""
    for tool in ("node", "runuser"):
        require_tool(tool)

    result, document = run_quick(tmp_path / "figures.json", "--parts", "load", "--reuse-images")

    load = document["load"]
    assert set(load["phases"]) == {"load", "faults"}
    for name, found in load["phases"].items():
        assert found["users"] == 3, name
        assert found["served"] == 3, (name, found)
        assert found["failed_users"] == 0, (name, found)
        assert all(value == 0 for value in found["leftovers"].values()), (name, found["leftovers"])
        for figure in ("start_to_answer_p50_s", "start_to_answer_p95_s", "event_loop_interval_p95_s"):
            assert found[figure] > 0, (name, figure, found)
        assert found["routes_at_peak"] >= 1, (name, found)
        assert found["hub_peak_mib"] > 0, (name, found)
        assert found["proxy_peak_mib"] > 0, (name, found)
    # Without faults, no attempt of any step failed.
    assert load["phases"]["load"]["failures_by_kind"] == {}, load["phases"]["load"]
    assert load["phases"]["load"]["faults"] is None
    faults = load["phases"]["faults"]["faults"]
    assert faults["running_at_faults"] >= 1, faults
    assert faults["lost"] == 0, faults
    assert faults["seconds_until_all_served_again"] is not None, faults
    assert "users who did not finish" in result.stdout  # the table
    # No user's token in what locust printed, recorded or reported.
    tokens = [entry["token"] for entry in json.loads((LOAD_WORK / "phases/load/accounts.json").read_text())]
    for path in [*LOAD_WORK.glob("phases/*/*"), tmp_path / "figures.json"]:
        if path.name != "accounts.json":
            text = path.read_text(errors="replace")
            assert not any(token in text for token in tokens), path
    assert not any(token in result.stdout + result.stderr for token in tokens)
