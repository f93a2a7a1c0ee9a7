"""Figures of the hub's spawner, each a ratio against a baseline measured in the same run.

    python bench/spawner_bench.py [--quick]

1. `BERDLSpawner.get_pod_manifest()` against plain `KubeSpawner.get_pod_manifest()` with the same
   settings, both built offline (`_mock=True`, a throwaway kube config): median of many calls, the two
   interleaved. Target: <= 1.5x.
2. 200 spawns at once against a Spark Cluster Manager that answers after 1 s, against one spawn: wall
   times of `start()`, medians of three rounds of each, with the kmock Kubernetes emulator and the fake
   services in a child process (localhub/standins/faults.py), so the hub's loop holds
   only the spawners.
   Target: <= 2x.

`measure_spawner(quick)` returns the figures as dicts (name, value, target, met, detail) for bench/run.py;
--quick makes few calls and 20 spawns: it checks that the bench runs, not the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import time
from typing import Any

from berdl_hub.spawner import BERDLSpawner
from kubespawner import KubeSpawner

from localhub.standins.faults import FaultServers
from localhub.standins.hub import FakeUser, hub_stop, reset_kubespawner
from localhub.standins.kube import NAMESPACE, throwaway_kube_config

SPARK_DELAY = 1.0
NO_FAULTS: dict[str, dict[str, float]] = {
    "spark_create_rates": {},
    "spark_delete_rates": {},
    "governance_rates": {},
}


def _figure(name: str, value: float, at_most: float, detail: str) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 3),
        "target": f"<= {at_most}",
        "met": value <= at_most,
        "detail": detail,
    }


# --- 1. the pod manifest ---------------------------------------------------------------------------------
COMMON = {
    "image": "ghcr.io/kbase/berdl-notebook:1.0",
    "namespace": NAMESPACE,
    "api_token": "hub-api-token-for-alice-0123456789",
    "uid": 1000,
    "gid": 100,
    "working_dir": "/home/{username}",
    "mem_limit": "8G",
    "cpu_limit": 2.0,
}


def manifest_spawners(*, plain_home: bool, shared_folder: bool) -> tuple[BERDLSpawner, KubeSpawner]:
    """The same user and settings; BERDL's adds the berdl-init container (and, without `plain_home`,
    the home).

    With `plain_home`, KubeSpawner mounts the same home as BERDL, configured as an operator of plain
    KubeSpawner would (`volumes` and `volume_mounts` with `{username}` templates), with BERDL's default
    resource guarantees and command: the same pod but for what home setup adds. With `shared_folder`,
    both also mount the same read-only folder, each configured its own way (BERDL's `shared_mounts`,
    KubeSpawner's `volumes` and `volume_mounts`)."""
    user = FakeUser(name="alice", auth_state={"kbase_token": "kbase-token-alice-0123456789"})
    berdl_extra: dict[str, Any] = {}
    if shared_folder:
        berdl_extra["shared_mounts"] = [
            {"name": "global-share", "mount_path": "/global_share", "host_path": "/mnt/share"}
        ]
    berdl = BERDLSpawner(
        _mock=True, user=user, init_image="ghcr.io/kbase/berdl-init:1.0", **COMMON, **berdl_extra
    )
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    plain_extra: dict[str, Any] = {}
    if plain_home:
        volumes.append(
            {
                "name": "home",
                "hostPath": {"path": berdl.home_host_path, "type": berdl.home_host_path_type},
            }
        )
        mounts.append({"name": "home", "mountPath": berdl.home_mount_path})
        plain_extra.update(
            cmd=berdl.cmd, mem_guarantee=berdl.mem_guarantee, cpu_guarantee=berdl.cpu_guarantee
        )
    if shared_folder:
        volumes.append({"name": "global-share", "hostPath": {"path": "/mnt/share", "type": "Directory"}})
        mounts.append({"name": "global-share", "mountPath": "/global_share", "readOnly": True})
    if volumes:
        plain_extra.update(volumes=volumes, volume_mounts=mounts)
    plain = KubeSpawner(_mock=True, user=user, **COMMON, **plain_extra)
    return berdl, plain


async def time_manifests(calls: int, *, plain_home: bool, shared_folder: bool = False) -> tuple[float, float]:
    """Median seconds of one get_pod_manifest() call: BERDL's, plain KubeSpawner's; interleaved."""
    berdl, plain = manifest_spawners(plain_home=plain_home, shared_folder=shared_folder)
    try:
        return await _time_manifests(berdl, plain, calls)
    finally:
        await reset_kubespawner()  # the offline spawners' API client must not serve the spawns below


async def _time_manifests(berdl: BERDLSpawner, plain: KubeSpawner, calls: int) -> tuple[float, float]:
    for _ in range(5):  # warm-up: lazy imports, caches
        await berdl.get_pod_manifest()
        await plain.get_pod_manifest()
    berdl_times: list[float] = []
    plain_times: list[float] = []
    for index in range(calls):
        pairs = [(berdl, berdl_times), (plain, plain_times)]
        for spawner, times in pairs if index % 2 else reversed(pairs):
            began = time.perf_counter()
            await spawner.get_pod_manifest()
            times.append(time.perf_counter() - began)
    return statistics.median(berdl_times), statistics.median(plain_times)


# --- 2. many spawns at once ------------------------------------------------------------------------------
async def timed_spawns(servers: FaultServers, users: list[str]) -> float:
    """Wall seconds for `start()` of one spawner per user, all at once; then they are stopped (untimed)."""
    assert servers.urls is not None
    urls = servers.urls
    spawners = [urls.spawner(user, 30.0, spark_create_timeout=60.0) for user in users]
    began = time.perf_counter()
    results = await asyncio.gather(*(spawner.start() for spawner in spawners), return_exceptions=True)
    elapsed = time.perf_counter() - began
    await asyncio.gather(*(hub_stop(spawner) for spawner in spawners))
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(users)} spawns failed, first: {failed[0]!r}")
    return elapsed


async def time_spawns(many: int, rounds: int) -> tuple[list[float], list[float], dict[str, Any]]:
    """Wall times of one spawn and of `many` spawns at once, `rounds` of each, alternating (one batch is
    a single draw of 200 randomised back-offs: its median over rounds is the figure); and the Spark
    API's view."""
    async with FaultServers(spark_delay=SPARK_DELAY, instant_pods=True, **NO_FAULTS) as servers:
        try:
            await timed_spawns(servers, ["warmup"])  # the hub's first spawn: imports, TLS, the reflector
            # A hub's start-up heap is old by the time users come: keep it out of the collections, as
            # the interpreter's and this bench's imports (e.g. test-only kubernetes-validate) are large.
            gc.collect()
            gc.freeze()
            single: list[float] = []
            batch: list[float] = []
            for round_ in range(rounds):
                single.append(await timed_spawns(servers, [f"single{round_}"]))
                batch.append(await timed_spawns(servers, [f"user{round_}-{i:03d}" for i in range(many)]))
            state = await servers.state()
        finally:
            gc.unfreeze()
            await reset_kubespawner()
    if state["spark"]["clusters"]:
        raise RuntimeError(f"{state['spark']['clusters']} Spark clusters left behind")
    return single, batch, state


async def _measure(quick: bool) -> list[dict[str, Any]]:
    calls = 50 if quick else 2000
    berdl, plain = await time_manifests(calls, plain_home=True)
    bare_berdl, bare_plain = await time_manifests(calls, plain_home=False)
    shared_berdl, shared_plain = await time_manifests(calls, plain_home=True, shared_folder=True)
    figures = [
        _figure(
            "BERDLSpawner.get_pod_manifest() / KubeSpawner's, same pod but the initContainer, median time",
            berdl / plain,
            1.5,
            f"{berdl * 1e6:.0f} us vs {plain * 1e6:.0f} us, median of {calls} calls each, interleaved; "
            f"both also mounting one shared folder: {shared_berdl * 1e6:.0f} us vs "
            f"{shared_plain * 1e6:.0f} us ({shared_berdl / shared_plain:.2f}x); against KubeSpawner "
            f"with no home volume: {bare_berdl * 1e6:.0f} us vs {bare_plain * 1e6:.0f} us "
            f"({bare_berdl / bare_plain:.2f}x)",
        )
    ]
    many = 20 if quick else 200
    singles, batches, state = await time_spawns(many, rounds=1 if quick else 3)
    single, batch = statistics.median(singles), statistics.median(batches)
    figures.append(
        _figure(
            f"{many} spawns at once / one spawn, Spark API answering after {SPARK_DELAY:g} s, wall time",
            batch / single,
            2.0,
            f"{batch:.2f} s vs {single:.2f} s, medians of {len(batches)} rounds (batches "
            f"{', '.join(f'{b:.2f}' for b in batches)} s); up to {state['spark']['max_in_flight']} "
            "POST /clusters answered at one time",
        )
    )
    return figures


def measure_spawner(quick: bool) -> list[dict[str, Any]]:
    """The spawner's figures: dicts with keys name, value, target, met, detail."""
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # the spawners log each spawn
    with throwaway_kube_config():
        return asyncio.run(_measure(quick))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few calls and 20 spawns: checks the bench runs")
    args = parser.parse_args()
    figures = measure_spawner(args.quick)
    width = max(len(f["name"]) for f in figures)
    print(f"{'figure':<{width}}  {'value':>7}  {'target':<7}  met  detail")
    for f in figures:
        met = "yes" if f["met"] else "NO"
        print(f"{f['name']:<{width}}  {f['value']:>7}  {f['target']:<7}  {met:<3}  {f['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
