"""Under load: many users at once through the whole local stack, then the same load with the proxy and
the hub restarted in the middle.

    python bench/under_load.py [--quick] [--reuse-images] [--users N] [--spawn-rate R]

It starts the local stack (localhub: PostgreSQL, configurable-http-proxy, JupyterHub with its culler and
berdl-proxy-watch, the stand-ins, the node playing the real images with podman) and runs the simulated
users of load_users.py in a locust process of their own, in two phases on the same stack:

- load: N users arrive at the spawn rate, each logs in, starts a server, runs a cell in a kernel through
  the proxy, idles, stops;
- faults: the same N users again; once half of them have their kernel's answer and some are still
  starting, the proxy is restarted (an empty routing table), then the hub (SIGTERM, then a new hub on the
  same database). Users retry what fails; the report says who was lost.

Meanwhile load_samples.py reads the proxy's routes, the hub's and the proxy's peak memory and the hub's
event-loop histogram every second. After each phase, once every user has stopped, nothing may be left:
no pod, Secret or Spark cluster, no route, no server. load_report.py computes the report.
`measure_load(quick, reuse_images)` returns it, for bench/run.py (`--parts load`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from load_report import report, table
from load_samples import Sampler
from time_to_lab import images_ready, missing_stack_requirement

from localhub.procs import base_env
from localhub.stack import Stack, running_stack
from localhub.tools import REPO
from localhub.users import User, make_users

BENCH = Path(__file__).resolve().parent
#: The stack's logs, the locust processes' output and the phases' records of the last run.
WORK = REPO / ".work" / "bench-load"
#: A hub service that may list the users and read their servers, for the check of what is left.
OBSERVER = "load-observer"
OBSERVER_TOKEN = secrets.token_hex(32)
OBSERVER_CONFIG = (
    f"c.JupyterHub.services.append({{'name': {OBSERVER!r}, 'api_token': {OBSERVER_TOKEN!r}}})\n"
    f"c.JupyterHub.load_roles.append({{'name': {OBSERVER!r}, 'scopes': ['list:users', 'read:servers'], "
    f"'services': [{OBSERVER!r}]}})\n"
)
#: The idle culler runs its rounds under the load (listing every user), and culls none of them: their
#: idle time is far below its timeout.
CULLER = {"BERDL_IDLE_TIMEOUT": "3600", "BERDL_CULL_EVERY": "30"}
#: How long what is left may take to go once the last user stopped (the node removes pods in rounds).
LEFTOVER_WAIT = 180


@dataclass(frozen=True)
class Scale:
    users: int
    spawn_rate: float  # users arriving per second
    idle: float  # seconds each user idles with its kernel, a cell every probe_every
    probe_every: float
    patience: float  # seconds a user keeps retrying failed steps


# N and the rate: see bench/README.md ("Choosing N"). On 2 cores a start costs seconds of CPU (berdl-init,
# podman, JupyterLab's server, the kernel): 40 users arriving one every 5 s were all served (20 at 0.1/s
# with room to spare; 40 at 0.4/s collapsed the machine), and with 90 s of idle about half of them run at
# once at the peak. The faults come once half have their kernel, while later ones are still arriving.
FULL = Scale(users=40, spawn_rate=0.2, idle=90, probe_every=10, patience=900)
QUICK = Scale(users=3, spawn_rate=0.2, idle=10, probe_every=3, patience=300)
PHASES = ("load", "faults")


def user_names(count: int) -> list[str]:
    return [f"load{n:02d}" for n in range(1, count + 1)]


def write_private(path: Path, document: Any) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(document) + "\n")


def read_timeline(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- what is left -------------------------------------------------------------------------------------


def hub_servers(stack: Stack) -> int | None:
    """How many servers the hub holds (running or pending), None when it does not answer."""
    try:
        answer = httpx.get(
            f"{stack.hub_url}/hub/api/users",
            headers={"Authorization": f"token {OBSERVER_TOKEN}"},
            timeout=10,
        )
        return sum(len(user.get("servers") or {}) for user in answer.json())
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def what_is_there(stack: Stack) -> dict[str, int | None]:
    """What the users' servers own: pods (in the API and played by the node), Secrets, Spark clusters,
    the proxy's routes but the hub's own, and the hub's servers."""
    routes: int | None
    try:
        routes = len([path for path in stack.proxy_routes() if path != "/"])
    except (httpx.HTTPError, ValueError):
        routes = None
    return {
        "pods": len(stack.standins.objects("v1/pods")),
        "pods_on_node": len(stack.standins.node.played),
        "secrets": len(stack.standins.objects("v1/secrets")),
        "spark_clusters": len(stack.standins.spark.clusters),
        "routes": routes,
        "servers": hub_servers(stack),
    }


def left_behind(stack: Stack, before: dict[str, int | None]) -> dict[str, int | None]:
    """What is there beyond what was there `before` the phase, once it stopped changing for the worse
    (given LEFTOVER_WAIT seconds to go)."""
    deadline = time.monotonic() + LEFTOVER_WAIT
    while True:
        now = what_is_there(stack)
        left = {k: None if now[k] is None else now[k] - (before[k] or 0) for k in now}  # type: ignore[operator]
        if all(v == 0 for v in left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(2)


# --- the faults ---------------------------------------------------------------------------------------


def wait_for_fault_moment(timeline: Path, scale: Scale, locust: subprocess.Popen[bytes]) -> None:
    """Until half the users have their kernel's answer while some are still starting (or, if the
    arrivals outran the starts, until half answered and no one is left to start)."""
    half = max(1, math.ceil(scale.users / 2))
    while locust.poll() is None:
        records = read_timeline(timeline)
        pressed = {r["user"] for r in records if r["step"] == "pressed"}
        answered = {r["user"] for r in records if r["step"] == "probe" and r.get("ok")}
        starting = pressed - answered
        if len(answered) >= half and (starting or len(pressed) == scale.users):
            return
        time.sleep(0.5)


def inject_faults(stack: Stack, record: Path) -> dict[str, float]:
    """Restart the proxy, wait for berdl-proxy-watch to give it its routes back (30 s at most), then
    stop the hub with SIGTERM and start a new one; record the moments (the users read `ended`)."""
    before = len([p for p in stack.proxy_routes() if p != "/"])
    faults = {"started": time.time()}
    stack.restart_proxy()
    faults["proxy_restarted"] = time.time()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len([p for p in stack.proxy_routes() if p != "/"]) >= before:
            break
        time.sleep(0.2)
    faults["routes_back"] = time.time()
    stack.stop_hub()
    faults["hub_stopped"] = time.time()
    stack.start_hub()
    faults["hub_started"] = faults["ended"] = time.time()
    write_private(record, faults)
    return faults


# --- one phase ----------------------------------------------------------------------------------------


def run_phase(stack: Stack, users: list[User], scale: Scale, name: str, faults_on: bool) -> dict[str, Any]:
    folder = WORK / "phases" / name
    folder.mkdir(parents=True, exist_ok=True)
    accounts, timeline = folder / "accounts.json", folder / "timeline.jsonl"
    stats, fault_record = folder / "stats.json", folder / "faults.json"
    for path in (timeline, stats, fault_record):
        path.unlink(missing_ok=True)
    write_private(accounts, [{"name": u.name, "token": u.kbase_token} for u in users])
    if not faults_on:
        write_private(fault_record, {"ended": 0})
    before = what_is_there(stack)
    load_before = os.getloadavg()
    command = [
        sys.executable,
        str(BENCH / "load_users.py"),
        f"--public-url={stack.public_url}",
        f"--accounts={accounts}",
        f"--users={scale.users}",
        f"--spawn-rate={scale.spawn_rate}",
        f"--idle={scale.idle}",
        f"--probe-every={scale.probe_every}",
        f"--patience={scale.patience}",
        f"--faults={fault_record}",
        f"--timeline={timeline}",
        f"--stats={stats}",
    ]
    sampler = Sampler(stack)
    sampler.start()
    faults = None
    with open(folder / "locust.log", "wb") as log:
        locust = subprocess.Popen(command, env=base_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            if faults_on:
                wait_for_fault_moment(timeline, scale, locust)
                faults = inject_faults(stack, fault_record)
            locust.wait(timeout=scale.users / scale.spawn_rate + scale.patience + 600)
        finally:
            if locust.poll() is None:
                locust.kill()
            sampler.stop()
    if locust.returncode != 0 or not stats.exists():
        tail = (folder / "locust.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{name}: the locust process failed ({locust.returncode}); its log ends:\n{tail}")
    left = left_behind(stack, before)
    found = report(
        scale.users,
        json.loads(stats.read_text()),
        read_timeline(timeline),
        faults,
        sampler.samples,
        sampler.loop(),
        left,
    )
    # Beside the figures, how busy the machine was (other work shares its 2 cores).
    found["load_average"] = {"before": load_before, "after": os.getloadavg()}
    (folder / "report.json").write_text(json.dumps(found, indent=2) + "\n")
    return found


def measure_load(quick: bool, reuse_images: bool, scale: Scale | None = None) -> dict[str, Any]:
    """The two phases' reports, and the settings they ran with."""
    missing = missing_stack_requirement()
    if missing:
        raise RuntimeError(missing)
    images_ready(reuse_images)
    scale = scale or (QUICK if quick else FULL)
    users = make_users(*user_names(scale.users))
    started = time.time()
    with running_stack(WORK, users, extra_config=OBSERVER_CONFIG, env=CULLER) as stack:
        stack.secrets.append(OBSERVER_TOKEN)
        phases = {name: run_phase(stack, users, scale, name, name == "faults") for name in PHASES}
    return {"scale": asdict(scale), "seconds": round(time.time() - started), "phases": phases}


def print_load_table(load: dict[str, Any]) -> None:
    scale = load["scale"]
    print(
        f"\nunder load: {scale['users']} users arriving at {scale['spawn_rate']}/s, "
        f"{load['seconds']} s in all"
    )
    print(table(load["phases"]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 users: checks that the load test runs")
    parser.add_argument("--reuse-images", action="store_true", help="play the images already built")
    parser.add_argument("--users", type=int, help="instead of the mode's number of users")
    parser.add_argument("--spawn-rate", type=float, help="users arriving per second, instead of the mode's")
    args = parser.parse_args()
    missing = missing_stack_requirement()
    if missing:
        parser.error(missing)
    scale = QUICK if args.quick else FULL
    if args.users or args.spawn_rate:
        changes = {"users": args.users or scale.users, "spawn_rate": args.spawn_rate or scale.spawn_rate}
        scale = Scale(**{**asdict(scale), **changes})
    load = measure_load(args.quick, args.reuse_images, scale)
    print(json.dumps(load, indent=2))
    print_load_table(load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
