"""scripts/local-hub as a person uses it (`python -m localhub`, which the script runs), in a real browser:
sign in, where JupyterLab opens and the Launcher's first notebook lands, Ctrl-C, a start again that
keeps the person's notebook, a start with --fresh that does not, and logs with no error in them.

The steps run in order and build on each other, on the module's own folder (.work/e2e-local-hub),
with the images the session's `podman` fixture built (--no-build).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from localhub.browser import SPAWN_TIMEOUT_MS, UserBrowser
from localhub.podman import Podman
from localhub.stack import HOMES
from localhub.tools import REPO
from tests.conftest import require_tool
from tests.e2e.conftest import E2E_WORK

pytestmark = pytest.mark.slow

WORK = E2E_WORK.with_name("e2e-local-hub")
SHOTS = WORK.with_name("e2e-local-hub-shots")  # outside the folder --fresh empties
HOME = WORK / "node" / HOMES.lstrip("/") / "alice"
MARKER = "written before the restart"
#: KubeSpawner's reflectors' read time-out of a watch (ResourceReflector.request_timeout), in seconds.
REFLECTOR_READ_TIMEOUT = 60
#: What marks an error in each log: JupyterHub's and jupyter_server's ([E ...], [C ...]), the stand-ins'
#: (Python logging), PostgreSQL's, configurable-http-proxy's, and a Python traceback anywhere.
ERROR_LINE = re.compile(
    r"^\[[EC] |\b(ERROR|CRITICAL)\b|\b(FATAL|PANIC):|\[ConfigProxy\] (\x1b\[\d+m)?error|^Traceback"
)
#: JupyterHub announces its own orderly stop (Ctrl-C) at the critical level.
SHUTDOWN = "Received signal SIGTERM, initiating shutdown..."


@dataclass
class LocalHub:
    """One run of `python -m localhub --work WORK --no-build ARGS`, until `stop()`."""

    args: tuple[str, ...] = ()
    url: str = ""
    printed: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    started: float = 0.0  # time.monotonic() when it was up
    #: The browser windows open on this run: left open when it stops, as a person leaves them.
    windows: list[UserBrowser] = field(default_factory=list)

    def start(self) -> LocalHub:
        WORK.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localhub", "--work", str(WORK), "--no-build", *self.args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()
        while not self.printed or self.printed[-1] != "Ctrl-C stops everything.":
            line = lines.get(timeout=300)
            assert line is not None, "python -m localhub ended before it was up:\n" + "\n".join(self.printed)
            self.printed.append(line)
            found = re.search(r"BERDL is running at (http://127\.0\.0\.1:\d+)/", line)
            if found:
                self.url = found.group(1)
        self._lines = lines
        self.started = time.monotonic()
        return self

    def _read(self, lines: queue.Queue[str | None]) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def stop(self) -> int:
        """Ctrl-C, as a person stops it; its exit status, once everything it printed is read."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(timeout=600)
        while (line := self._lines.get(timeout=30)) is not None:
            self.printed.append(line)
        for window in self.windows:
            window.page.context.close()
        return status

    def window(self, browser: Any, name: str) -> UserBrowser:
        self.windows.append(UserBrowser.open(browser, name, self.url, SHOTS))
        return self.windows[-1]

    @property
    def log_dir(self) -> Path:
        (line,) = [line for line in self.printed if line.strip().startswith("logs:")]
        return Path(line.split(":", 1)[1].strip())


def error_lines(log_dir: Path) -> list[str]:
    return [
        f"{path.relative_to(log_dir)}: {line[:300]}"
        for path in sorted(log_dir.rglob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if ERROR_LINE.search(line) and not line.endswith(SHUTDOWN)
    ]


def processes_of(run: LocalHub) -> set[int]:
    """The processes of a run's hub and its services (they run in WORK/hub) and of its proxy (which
    listens on the run's port)."""
    port = run.url.rsplit(":", 1)[1]
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # not a process, or one that ended meanwhile
        if cwd == str(WORK / "hub") or f"--port={port}" in cmdline:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "(ended)"


def jupyter_pods() -> set[str]:
    listed = Podman()("pod", "ps", "--format", "{{.Name}}").stdout.split()
    return {name for name in listed if name.startswith("jupyter-")}


def sign_in_at_the_front_door(window: UserBrowser) -> None:
    """What a person does with the printed URL: open it, sign in with KBase; the server starts."""
    window.page.goto(f"{window.public_url}/")
    window.page.wait_for_url(re.compile(r".*/hub/login.*"))
    window.page.click("a:has-text('KBase')")
    window.page.click(f"button[value={json.dumps(window.name)}]")
    window.page.wait_for_url(re.compile(rf".*/user/{window.name}/lab.*"), timeout=SPAWN_TIMEOUT_MS)
    window.wait_for_lab()


@pytest.fixture(scope="module")
def runs(podman: Podman, browser: Any) -> Iterator[list[LocalHub]]:
    """The runs of the module, in order; any still running at the end is stopped (before the browser
    ends: a run closes its windows)."""
    for tool in ("node", "runuser"):
        require_tool(tool)
    started: list[LocalHub] = []
    yield started
    for run in started:
        if run.process is not None and run.process.poll() is None:
            run.stop()


def test_1_signing_in_starts_the_server_and_the_launchers_first_notebook_saves_in_the_home(
    runs: list[LocalHub], browser: Any
) -> None:
    run = LocalHub(("--fresh",)).start()
    runs.append(run)
    assert any("signing in starts your server" in line for line in run.printed), run.printed
    alice = run.window(browser, "alice")
    sign_in_at_the_front_door(alice)
    alice.shot("first-lab")
    assert alice.folder() == "home/alice"
    alice.new_notebook()  # the Launcher's "Python 3"
    assert (HOME / "Untitled.ipynb").is_file()
    alice.run_in_notebook(f"import json; print(json.dumps({MARKER!r}))")
    alice.save_as("kept.ipynb")
    alice.shot("notebook-saved")
    assert MARKER in (HOME / "kept.ipynb").read_text()


def test_2_ctrl_c_stops_everything_and_leaves_no_pod(runs: list[LocalHub]) -> None:
    run = runs[-1]
    assert run.stop() == 0, "\n".join(run.printed)
    assert run.printed[-1] == "stopped; no pod is left."
    assert jupyter_pods() == set()
    assert not (WORK / "leftovers.json").exists()  # it stopped: the next start has nothing to end


def test_3_a_start_again_keeps_the_notebook_and_clears_the_server_of_the_last_run(
    runs: list[LocalHub], browser: Any
) -> None:
    run = LocalHub().start()
    runs.append(run)
    assert MARKER in (HOME / "kept.ipynb").read_text()
    alice = run.window(browser, "alice")
    sign_in_at_the_front_door(alice)
    alice.shot("lab-after-restart")
    listed = alice.page.locator(".jp-DirListing-item[title*='kept.ipynb']")
    listed.first.wait_for()
    listed.first.dblclick()
    alice.notebook().locator(".jp-OutputArea-output", has_text=MARKER).first.wait_for()
    alice.shot("notebook-after-restart")
    # The last run stopped with alice's server running (the hub keeps servers across its restarts): this
    # run's hub found its pod gone and cleared it, so that her sign-in started a new one.
    hub_log = (run.log_dir / "hub.log").read_text()
    assert "jupyter-alice" in hub_log
    assert "appears to have stopped while the Hub was down" in hub_log
    # Up longer than the read time-out of the hub's reflectors (60 s), after which a watch the API never
    # ended would fail with an error in hub.log (test_4 reads it).
    time.sleep(max(0.0, REFLECTOR_READ_TIMEOUT + 15 - (time.monotonic() - run.started)))
    assert run.stop() == 0, "\n".join(run.printed)


def test_4_the_logs_of_both_healthy_runs_hold_no_error_and_every_berdl_init_run(runs: list[LocalHub]) -> None:
    first, second = runs
    assert first.log_dir != second.log_dir
    for run in runs:
        assert (run.log_dir / "hub.log").stat().st_size > 0
        assert error_lines(run.log_dir) == []
    # Each run's berdl-init log is its own: the first prepared the home, the second found it prepared.
    reports = [json.loads((run.log_dir / "pods/jupyter-alice/berdl-init.1.log").read_text()) for run in runs]
    assert reports[0]["changes"] != []
    assert reports[1]["changes"] == []


def test_5_fresh_starts_from_nothing(runs: list[LocalHub]) -> None:
    before = runs[-1].log_dir
    run = LocalHub(("--fresh",)).start()
    runs.append(run)
    assert not (HOME / "kept.ipynb").exists()
    assert not before.exists()  # --fresh empties the whole folder, the old runs' logs too
    assert run.stop() == 0, "\n".join(run.printed)


def test_6_a_start_ends_what_a_killed_run_left_running(runs: list[LocalHub], browser: Any) -> None:
    run = LocalHub().start()
    runs.append(run)
    sign_in_at_the_front_door(run.window(browser, "alice"))
    assert run.process is not None
    run.process.kill()  # SIGKILL: nothing of the stack's own stop runs
    run.process.wait(timeout=60)
    # The hub, its services and the proxy go on in sessions of their own; podman keeps the pod.
    left = processes_of(run)
    assert len(left) >= 2, left
    assert "jupyter-alice" in jupyter_pods()

    again = LocalHub().start()
    runs.append(again)
    ended = [line for line in again.printed if line.startswith("ended what the last run")]
    assert any(line.endswith("pod jupyter-alice") for line in ended), again.printed
    assert any("PostgreSQL" in line for line in ended), again.printed
    assert {pid: command_of(pid) for pid in left if alive(pid)} == {}
    assert jupyter_pods() == set()
    assert again.stop() == 0, "\n".join(again.printed)
    for window in run.windows:
        window.page.context.close()
