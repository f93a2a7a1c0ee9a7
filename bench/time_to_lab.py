"""Time to JupyterLab: from pressing Start in a real browser to a usable JupyterLab, against two baselines
started in the same run from the same notebook image.

    python bench/time_to_lab.py [--quick] [--reuse-images]

It runs on the local stack (localhub: PostgreSQL, configurable-http-proxy, JupyterHub, the node
stand-in playing the real images with podman, Debian's chromium) and needs what tests/e2e needs: root
(rootful podman), podman, runc, node, runuser, PostgreSQL and chromium.

A start is timed from the click on the home page's Start button to a usable JupyterLab: its file browser
drawn, a console opened from the launcher on the user's default kernel, and that kernel's answer to one
line of code shown. Each start is split, by the clocks of this one machine, into:

- hub: from the click until the pod exists in the Kubernetes API (kmock's creation of the object): the
  login check, the Spark cluster, the credentials, the pod's manifest;
- node: what the node stand-in spends around the containers (podman's pod, volumes, Secrets and
  containers), before the first container starts and between the initContainer's end and the
  notebook's start; a kubelet's own figure would differ;
- init: the initContainer, berdl-init, from its start to its end as podman recorded them;
- notebook: from the notebook container's start to the usable JupyterLab; of it, `browser` is the part
  from the browser's arrival on /user/NAME/lab (the hub found the server ready) to the usable JupyterLab:
  JupyterLab loading in the browser and the kernel's start.

The subject is BERDL's spawner on a new home and on a prepared home (a start after the first, on a
home holding many small files). The first round's new home is alice's first start, which prepares the
home of every later start of hers; later rounds start a second user on a new home. The baselines are
started from the same hub with other settings (`TTL_BASELINE`, read by the settings this bench appends
to the hub's extra config):

- plain: a `kubespawner.KubeSpawner` pod with the same image, home volume, command, user and resources,
  and no initContainer: what a start costs without home setup;
- chown: the same pod started as root, with a root start hook that ends in `chown -R` of the home
  before it drops to the notebook user, as production's spark_notebook start hook does. podman runs as
  root here, so the hook's chown changes the node's own files, as it would on a node.

`measure_time_to_lab(quick, reuse_images)` returns the figures (dicts: name, value, target, met, detail)
and every start's split, for bench/run.py. --quick: one round on a 2,000-file home.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from big_home import fill_home

from localhub.browser import CHROMIUM, SPAWN_TIMEOUT_MS, UserBrowser, chromium
from localhub.podman import INIT_IMAGE, NOTEBOOK_IMAGE, Podman
from localhub.procs import postgres_tool
from localhub.stack import HOMES, HUB_NOTEBOOK_IMAGE, SHARED, SHARED_IN_POD, Stack, running_stack
from localhub.standins.kube import NAMESPACE
from localhub.tools import REPO, ToolMissing, find_tool, is_root
from localhub.users import make_users

#: The stack's logs and the browser's screenshots of the last run, for a person to look at.
WORK = REPO / ".work" / "bench-ttl"
#: The hub's environment variable that selects a baseline ("" or unset: BERDL's own spawner).
BASELINE_VARIABLE = "TTL_BASELINE"
PLAIN, CHOWN = "plain", "chown"
NEW, PREPARED = "new home", "prepared home"
#: The user of every prepared-home start and of both baselines, and the user whose home is new each time.
USER, NEWCOMER = "alice", "newcomer"
NB_UID, NB_GID = 1000, 100
CODE, ANSWER = "print(6 * 7)", "42"

# The root start hook of the chown baseline, run by the image's entrypoint (start.sh, after its own
# hooks) as root: the home given to the notebook user, recursively, then the server as that user. The
# two times go to the container's log for the split.
ROOT_HOOK = f"""started=$EPOCHREALTIME
chown -R {NB_UID}:{NB_GID} "$HOME"
echo "root start hook: chown -R started=$started finished=$EPOCHREALTIME" >&2
exec setpriv --reuid={NB_UID} --regid={NB_GID} --init-groups "$@"
"""

# Appended to the stack's operator settings. Without TTL_BASELINE the hub is BERDL's; with it, a plain
# KubeSpawner with what BERDLSpawner gives the notebook container (image, home and shared mounts, HOME
# and the JUPYTER_*_DIR variables, uid and gid, cmd, resources, server root), and no initContainer.
BASELINES = f"""
import os as _os

_baseline = _os.environ.get({BASELINE_VARIABLE!r}, "")
if _baseline:
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.KubeSpawner.namespace = {NAMESPACE!r}
    c.KubeSpawner.image = {HUB_NOTEBOOK_IMAGE!r}
    c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
    c.KubeSpawner.uid = {NB_UID}
    c.KubeSpawner.gid = {NB_GID}
    c.KubeSpawner.cpu_guarantee, c.KubeSpawner.cpu_limit = 0.5, 4.0
    c.KubeSpawner.mem_guarantee, c.KubeSpawner.mem_limit = 2 * 2**30, 16 * 2**30
    c.KubeSpawner.working_dir = "/home/{{username}}"
    c.KubeSpawner.environment = {{
        "HOME": "/home/{{username}}",
        "JUPYTER_CONFIG_DIR": "/home/{{username}}/.jupyter",
        "JUPYTER_DATA_DIR": "/home/{{username}}/.jupyter/data",
        "JUPYTER_RUNTIME_DIR": "/home/{{username}}/.jupyter/runtime",
    }}
    c.KubeSpawner.volumes = [
        {{"name": "home", "hostPath": {{"path": {HOMES!r} + "/{{username}}", "type": "Directory"}}}},
        {{"name": "shared", "hostPath": {{"path": {SHARED!r}, "type": "Directory"}}}},
    ]
    c.KubeSpawner.volume_mounts = [
        {{"name": "home", "mountPath": "/home/{{username}}"}},
        {{"name": "shared", "mountPath": {SHARED_IN_POD!r}, "readOnly": True}},
    ]
    c.KubeSpawner.notebook_dir = "/"
    c.KubeSpawner.default_url = "/lab/tree/home/{{username}}"
    c.KubeSpawner.start_timeout = 600
    c.KubeSpawner.http_timeout = 300
if _baseline == {CHOWN!r}:
    c.KubeSpawner.uid = 0
    c.KubeSpawner.cmd = ["bash", "-c", {ROOT_HOOK!r}, "root-start-hook", "jupyterhub-singleuser"]
"""


@dataclass(frozen=True)
class Scale:
    rounds: int
    folders: int
    files_per_folder: int


FULL = Scale(rounds=5, folders=2000, files_per_folder=100)
QUICK = Scale(rounds=1, folders=20, files_per_folder=100)


@dataclass(frozen=True)
class Start:
    """One timed start: seconds from the click to a usable JupyterLab, and its parts (they add up)."""

    variant: str
    total: float
    hub: float
    node: float
    init: float
    notebook: float
    #: Of `notebook`: from the browser's arrival on JupyterLab's page to the usable JupyterLab.
    browser: float
    #: The chown baseline only: the hook's `chown -R`, part of `notebook`.
    chown: float | None = None


# --- what the machine needs ---------------------------------------------------------------------------


def missing_requirement() -> str | None:
    """What the stack and the browser need and this machine lacks, in the words of localhub's own
    checks; None if all is there."""
    missing = missing_stack_requirement()
    if missing is None and not CHROMIUM.exists():
        return f"Debian's chromium is not installed at {CHROMIUM} (scripts/setup installs it)"
    return missing


def missing_stack_requirement() -> str | None:
    """What the local stack alone needs and this machine lacks (under_load.py needs no browser)."""
    if not is_root():
        return "the stack runs podman as root (overlay storage, hostPath volumes)"
    try:
        for tool in (
            "podman",
            "runc",
            "node",
            "runuser",
            str(REPO / "node_modules/.bin/configurable-http-proxy"),
        ):
            find_tool(tool)
        postgres_tool("initdb")
        postgres_tool("pg_ctl")
    except ToolMissing as missing:
        return str(missing)
    return None


def images_ready(reuse: bool) -> None:
    """The images the node plays: built (podman's layer cache makes an unchanged build a few seconds),
    or, with `reuse`, the ones already built in this checkout (the tests' session fixture built them)."""
    podman = Podman()
    if not reuse:
        podman.build_images()
        return
    for image in (INIT_IMAGE, NOTEBOOK_IMAGE):
        if podman("image", "exists", image, check=False).returncode != 0:
            raise RuntimeError(
                f"--reuse-images: {image} is not built (images/build --tag test init notebook)"
            )


# --- one start ----------------------------------------------------------------------------------------


def _podman_time(stamp: str) -> float:
    """podman's RFC 3339 time, nanoseconds and all, as seconds since the epoch."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


def run_in_console(window: UserBrowser, code: str) -> str:
    """Open a console on the default kernel from the launcher, run `code` once the kernel is idle, return
    what it printed."""
    page = window.page
    window.open_launcher()
    page.click('.jp-LauncherCard[data-category="Console"]')
    page.locator(".jp-CodeConsole-promptCell .cm-content").wait_for()
    page.locator(".jp-StatusBar-TextItem[title^='Change kernel']", has_text="| Idle").wait_for()
    page.locator(".jp-CodeConsole-promptCell .cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-CodeConsole-content .jp-OutputArea-output").first
    output.wait_for()
    return output.inner_text()


def _chown_seconds(stack: Stack, pod: str) -> float:
    """How long the chown baseline's hook spent in `chown -R`, from what it wrote to the container's log."""
    logs = stack.standins.loop.run(stack.standins.node.podman("logs", f"{pod}-notebook"))
    found = re.search(r"chown -R started=([\d.]+) finished=([\d.]+)", logs.stdout + logs.stderr)
    if found is None:
        raise RuntimeError(f"{pod}: the root start hook did not run chown -R (no line of it in the log)")
    return float(found[2]) - float(found[1])


def _check_pod(pod: dict[str, Any], variant: str) -> None:
    """The pod is the one the variant says: BERDL's has berdl-init; the baselines have no initContainer,
    and the chown one starts as root."""
    spec = pod["spec"]
    inits = [c["name"] for c in spec.get("initContainers") or []]
    notebook = next(c for c in spec["containers"] if c["name"] == "notebook")
    user = (
        (notebook.get("securityContext") or {}).get("runAsUser"),
        (spec.get("securityContext") or {}).get("runAsUser"),
    )
    wanted_inits = [] if variant in (PLAIN, CHOWN) else ["berdl-init"]
    if inits != wanted_inits or (variant == CHOWN) != (0 in user):
        raise RuntimeError(
            f"{variant}: the pod is not that variant's (initContainers {inits}, runAsUser {user})"
        )


def _container_times(stack: Stack, pod: str, container: str) -> tuple[float, float | None]:
    """When podman started and (if it has) finished the pod's `container`, to the nanosecond: the
    kubelet's status has whole seconds only, too coarse for an initContainer that takes half of one."""
    inspected = stack.standins.loop.run(stack.standins.node.podman.inspect(f"{pod}-{container}"))
    if inspected is None:
        raise RuntimeError(f"{pod}: podman has no container {container}")
    state = inspected["State"]
    finished = _podman_time(state["FinishedAt"]) if state.get("Status") == "exited" else None
    return _podman_time(state["StartedAt"]), finished


def split(stack: Stack, pod_name: str, moments: tuple[float, float, float], variant: str) -> Start:
    """The parts of one start, from the `moments` of the click, of the browser's arrival on JupyterLab's
    page and of the usable JupyterLab, with the API's creation of the pod and podman's container times."""
    pressed, arrived, usable = moments
    pod = stack.standins.objects("v1/pods")[pod_name]
    _check_pod(pod, variant)
    created = stack.standins.api.created_at[("pods", pod_name)]
    notebook_started, _ = _container_times(stack, pod_name, "notebook")
    init = 0.0
    node = notebook_started - created
    for container in pod["spec"].get("initContainers") or []:
        started, finished = _container_times(stack, pod_name, container["name"])
        if finished is None:
            raise RuntimeError(f"{pod_name}: the initContainer {container['name']} has not finished")
        init += finished - started
        node -= finished - started
    chown = _chown_seconds(stack, pod_name) if variant == CHOWN else None
    return Start(
        variant=variant,
        total=usable - pressed,
        hub=created - pressed,
        node=node,
        init=init,
        notebook=usable - notebook_started,
        browser=usable - arrived,
        chown=chown,
    )


#: What ends a wait for the server: JupyterLab's file browser, or JupyterHub's error page, or its
#: progress page turned red (a failed spawn), so that a failure ends the start at once.
OUTCOME = ".jp-DirListing-content, div.error, #progress-bar.bg-danger"


def timed_start(stack: Stack, window: UserBrowser, variant: str) -> Start:
    """Press Start on the home page; wait for a usable JupyterLab; split the time."""
    page = window.page
    page.goto(f"{stack.public_url}/hub/home")
    page.wait_for_selector("#start", state="visible")
    lab = re.compile(rf".*/user/{window.name}/lab.*")
    arrivals: list[float] = []

    def arrival(frame: Any) -> None:
        if frame == page.main_frame and lab.match(frame.url):
            arrivals.append(time.time())

    page.on("framenavigated", arrival)
    try:
        pressed = time.time()
        page.click("#start")
        page.locator(OUTCOME).first.wait_for(timeout=SPAWN_TIMEOUT_MS)
    finally:
        page.remove_listener("framenavigated", arrival)
    if not arrivals or not lab.match(page.url):
        window.shot(f"{variant.replace(' ', '-')}-failed")
        shown = " ".join(page.locator("body").inner_text().split())[:300]
        logs = stack.log_dir
        raise RuntimeError(
            f"{variant}: no JupyterLab for {window.name}; the page says: {shown} (logs: {logs})"
        )
    printed = run_in_console(window, CODE)
    usable = time.time()
    if printed.strip() != ANSWER:
        raise RuntimeError(f"{variant}: the console printed {printed!r}, not {ANSWER}")
    window.shot(variant.replace(" ", "-"))
    return split(stack, f"jupyter-{window.name}", (pressed, arrivals[0], usable), variant)


def stop(stack: Stack, window: UserBrowser) -> None:
    """Stop from the control panel; wait until the node has removed the pod (a next start of the same
    pod would wait for that removal); forget JupyterLab's workspace, so that every start opens as a first
    visit does, on the launcher, with no console of the last start to restore."""
    window.stop_server()
    pod = f"jupyter-{window.name}"
    deadline = time.monotonic() + 300
    while pod in stack.standins.node.played:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pod} still played by the node 300 s after its stop")
        time.sleep(0.25)
    shutil.rmtree(stack.home(window.name) / ".jupyter" / "lab" / "workspaces", ignore_errors=True)


def switch_hub(stack: Stack, baseline: str) -> None:
    """The same hub, restarted with BERDL's spawner ("") or a baseline's settings."""
    stack.stop_hub()
    stack.start_hub(env={BASELINE_VARIABLE: baseline})


# --- the run --------------------------------------------------------------------------------------------


def hub_modes(rounds: int) -> Iterator[tuple[int, str]]:
    """(round, mode): BERDL's hub, then the two baselines, back and forth: each round runs all three, and
    the hub restarts only between modes."""
    modes = ["", PLAIN, CHOWN]
    for number in range(rounds):
        for mode in modes if number % 2 == 0 else reversed(modes):
            yield number, mode


def run_starts(scale: Scale, work: Path) -> tuple[list[Start], int]:
    """Every timed start of the run, and the number of files in the prepared home."""
    users = make_users(USER, NEWCOMER)
    with chromium() as browser, running_stack(work, users, extra_config=BASELINES) as stack:
        windows: dict[str, UserBrowser] = {}

        def window(name: str) -> UserBrowser:
            if name not in windows:
                windows[name] = UserBrowser.open(browser, name, stack.public_url, work / "shots")
                windows[name].log_in_on_kbase()
            return windows[name]

        # alice's first start is the first round's new home; then her home gets the small files, which
        # she owns as she owns her other files.
        starts = [timed_start(stack, window(USER), NEW)]
        stop(stack, window(USER))
        home = stack.home(USER)
        files = fill_home(home, scale.folders, scale.files_per_folder)
        subprocess.run(["chown", "-R", f"{NB_UID}:{NB_GID}", str(home / "data")], check=True)
        current = ""
        for number, mode in hub_modes(scale.rounds):
            if mode != current:
                switch_hub(stack, mode)
                current = mode
            if mode == "" and number > 0:
                shutil.rmtree(stack.home(NEWCOMER), ignore_errors=True)
                starts.append(timed_start(stack, window(NEWCOMER), NEW))
                stop(stack, window(NEWCOMER))
            starts.append(timed_start(stack, window(USER), mode or PREPARED))
            stop(stack, window(USER))
    return starts, files


def _medians(starts: list[Start], variant: str) -> dict[str, float]:
    chosen = [asdict(start) for start in starts if start.variant == variant]
    parts = ["total", "hub", "node", "init", "notebook", "browser"] + (["chown"] if variant == CHOWN else [])
    return {part: statistics.median(start[part] for start in chosen) for part in parts}


def _parts(medians: dict[str, float]) -> str:
    text = ", ".join(f"{part} {medians[part]:.1f}" for part in ("hub", "node", "init", "notebook"))
    text += f" (browser {medians['browser']:.1f}"
    text += f", chown -R {medians['chown']:.1f})" if "chown" in medians else ")"
    return text


def figures(starts: list[Start], files: int, rounds: int) -> list[dict[str, Any]]:
    """The ratios of the medians, subject over baseline. The targets are this bench's own proposals: the
    issue sets none."""
    medians = {variant: _medians(starts, variant) for variant in (NEW, PREPARED, PLAIN, CHOWN)}
    chown_name = f"root hook with chown -R of a {files:,}-file home"
    rows = [
        (NEW, PLAIN, "new home / plain KubeSpawner pod", 1.5),
        (PREPARED, PLAIN, f"prepared {files:,}-file home / plain KubeSpawner pod", 1.1),
        (PREPARED, CHOWN, f"prepared {files:,}-file home / {chown_name}", 1.0),
    ]
    result = []
    for subject, baseline, name, at_most in rows:
        ratio = medians[subject]["total"] / medians[baseline]["total"]
        result.append(
            {
                "name": f"time to JupyterLab, {name}",
                "value": round(ratio, 3),
                "target": f"<= {at_most}",
                "met": ratio <= at_most,
                "detail": (
                    f"{medians[subject]['total']:.1f} s vs {medians[baseline]['total']:.1f} s, medians of "
                    f"{rounds}; parts in s: {_parts(medians[subject])} vs {_parts(medians[baseline])}"
                ),
            }
        )
    return result


def measure_time_to_lab(quick: bool, reuse_images: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The time-to-JupyterLab figures (dicts: name, value, target, met, detail) and every start's split."""
    missing = missing_requirement()
    if missing:
        raise RuntimeError(missing)
    images_ready(reuse_images)
    scale = QUICK if quick else FULL
    starts, files = run_starts(scale, WORK)
    return figures(starts, files, scale.rounds), [asdict(start) for start in starts]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one round on a 2,000-file home")
    parser.add_argument(
        "--reuse-images", action="store_true", help="play the images already built; build none"
    )
    args = parser.parse_args()
    missing = missing_requirement()
    if missing:
        parser.error(missing)
    found, starts = measure_time_to_lab(args.quick, args.reuse_images)
    print(json.dumps({"figures": found, "starts": starts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
