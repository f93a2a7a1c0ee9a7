"""Crash safety: berdl-init killed (SIGKILL) at every one of its file-changing operations.

The program runs under tests/reliability/killer.py, which counts its file-changing system calls (the
virtualenv build, which runs in-process, included) and kills it just before the Nth. An uninterrupted run
traced once tells how many there are; then, for every N, from the same starting home:

1. run berdl-init and kill it at operation N;
2. check that every managed file that exists is complete: the bytes it had before the run, or those of
   an uninterrupted run (the venv: its whole tree, old or new);
3. run berdl-init again, to the end, and check that the home equals the home of an uninterrupted run
   (paths, types, modes, owners, bytes, link targets; the time stamp in a moved-aside venv's name aside).

Two scenarios: a cold run (no home at all) and an update (a home made by an older configuration: other
templates, fewer favorites, a venv whose pyvenv.cfg names another minor Python and holds two packages of
the user's, a runtime folder with a loose mode), which exercises every kind of change: mkdir, chmod, write
over a managed file, move-aside, build, and the restore of the user's packages (one from the "index", a
folder of wheels; one from a file of the user's, which is listed instead).

A venv published with its restore still pending (berdl-restore-pending.json in it) is a state of its own
after a kill: the next run finishes the restore, which the comparison with the reference home checks.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from berdl_init.safefs import temp_name
from berdl_init.settings import PACKAGED_TEMPLATES
from berdl_init.steps.venv import NOT_RESTORED, RESTORE_PENDING
from localhub.wheels import module_wheel
from tests.reliability.conftest import (
    FAVORITES_REL,
    KILLER,
    LEDGER_REL,
    VENV_REL,
    berdl,
    diff,
    tree,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("as_root")]

#: Files berdl-init owns whole: after a kill each is absent, as before the run, or as after it.
MANAGED_FILES = (".bashrc", ".bash_profile", FAVORITES_REL, LEDGER_REL)
#: How many of the virtualenv build's operations are kill points, chosen by a seeded random.
VENV_SAMPLE = 20
#: Parallel workers, each with its own home (this machine has 2 cores).
WORKERS = 2


@dataclass
class Slot:
    """One worker's home, with its starting state, its scratch folder and a folder for a favorite."""

    root: Path
    scenario: str

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def seed(self) -> Path:
        return self.root / "seed"

    @property
    def scratch(self) -> Path:
        return self.root / "tmp"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def index(self) -> Path:
        """The package "index" of the restore: a folder of wheels."""
        return self.root / "index"


@dataclass
class Outcome:
    kill_at: int
    step: str
    killed: bool
    problems: list[str] = field(default_factory=list)


def new_settings(slot: Slot) -> dict[str, str]:
    favorites = [{"path": str(slot.home), "name": "Home"}, {"path": str(slot.shared), "name": "Shared"}]
    index = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(slot.index)}
    return {"BERDL_FAVORITES": json.dumps(favorites), **index}


def user_pip(slot: Slot, *requirements: str) -> None:
    """The user's `pip install` in the venv, from the index."""
    python = slot.home / VENV_REL / "bin" / "python"
    options = ["--no-index", "--find-links", str(slot.index), "--no-cache-dir", "--disable-pip-version-check"]
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *options, *requirements],
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
        check=True,
        timeout=300,
    )


def prepare(slot: Slot, old_templates: Path) -> None:
    """The starting home of the scenario, kept in slot.seed (absent for a cold run)."""
    slot.scratch.mkdir(parents=True, exist_ok=True)
    slot.shared.mkdir(exist_ok=True)
    if slot.scenario == "cold":
        return
    old = {"BERDL_TEMPLATES_DIR": str(old_templates)}
    report, _ = berdl(slot.home, slot.scratch, **old)
    assert report["ok"] is True
    (slot.home / ".jupyter/runtime").chmod(0o755)
    cfg = slot.home / VENV_REL / "pyvenv.cfg"
    lines = cfg.read_text().splitlines(keepends=True)
    cfg.write_text(
        "".join("version_info = 3.0.1.final.0\n" if x.startswith("version_info") else x for x in lines)
    )
    (slot.home / VENV_REL / "marker.txt").write_text("the user's\n")
    module_wheel(slot.index, "fromindex", "1.0")
    user_pip(slot, "fromindex==1.0", str(module_wheel(slot.root / "mine", "localwheel", "1.0")))
    shutil.copytree(slot.home, slot.seed, symlinks=True)
    shutil.rmtree(slot.home)


def reset(slot: Slot) -> None:
    if slot.home.exists():
        shutil.rmtree(slot.home)
    if slot.seed.exists():
        # copytree keeps modes, owners are root's on both sides; time stamps do not matter here.
        shutil.copytree(slot.seed, slot.home, symlinks=True)


def killed_run(
    slot: Slot, kill_at: int, trace: Path | None = None, mutant: str = ""
) -> subprocess.CompletedProcess[str]:
    extra = {"KILLER_AT": str(kill_at), "KILLER_MUTANT": mutant}
    if trace is not None:
        extra["KILLER_TRACE"] = str(trace)
    _, result = berdl(
        slot.home, slot.scratch, status=None, launcher=[str(KILLER)], **new_settings(slot), **extra
    )
    return result


def step_of(path: str, slot: Slot) -> str:
    """Which part of the run an operation on `path` belongs to."""
    if path == str(slot.home):
        return "home"
    if RESTORE_PENDING in path or NOT_RESTORED in path:
        return "restore"
    if not path.startswith(f"{slot.home}/") or ".virtualenvs" in path or "/kernels/" in path:
        return "venv"  # virtualenv's own scratch files (and /dev/null for its child's input)
    if "favorites" in path or path.endswith((".jupyter/lab", "user-settings", "@jlab-enhanced")):
        return "favorites"
    if ".bash" in path:
        return "dotfiles"
    if ".local" in path:
        return "lock+ledger"
    if ".jupyter" in path:
        return "dirs"
    return "other"


def managed_state(home: Path) -> dict[str, Any]:
    """What each managed thing is now: the bytes of each file, the tree of the venv, the aside venvs."""
    state: dict[str, Any] = {}
    for rel in MANAGED_FILES:
        path = home / rel
        state[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    venv = home / VENV_REL
    # Normalised as the reference is (home path, the old venv's time stamp in the restore's files).
    state["venv"] = tree(venv, home=home) if venv.exists() else None
    state["asides"] = [tree(p, home=home) for p in sorted(venv.parent.glob(f"{venv.name}.berdl-old-*"))]
    runtime = home / ".jupyter/runtime"
    state["runtime-mode"] = runtime.lstat().st_mode & 0o777 if runtime.exists() else None
    return state


def unmarked(venv: dict[str, Any] | None) -> dict[str, Any] | None:
    """A venv's tree without the restore's mark (or its temporary name): an old venv is marked just before
    it is moved aside, and keeps the mark until its restore ends; the rest must be the venv it was."""
    if venv is None:
        return None
    return {
        key: value for key, value in venv.items() if key not in (RESTORE_PENDING, temp_name(RESTORE_PENDING))
    }


def restoring(venv: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """The new venv, marked, with part of what its restore installs: each entry as after the run (but the
    temporary file of the list of what is missing, which the next write of the list replaces)."""
    if venv is None or RESTORE_PENDING not in venv:
        return False
    entries = (unmarked(venv) or {}).items()
    return all(after.get(key) == value for key, value in entries if key != temp_name(NOT_RESTORED))


def partial_problems(now: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = []
    for key in (*MANAGED_FILES, "venv", "runtime-mode"):
        if key == "venv" and restoring(now[key], after[key]):
            continue  # the new venv, published with its restore not finished: the re-run must finish it
        value = unmarked(now[key]) if key == "venv" else now[key]
        if value is not None and value not in (before[key], after[key]):
            problems.append(f"{key} is neither as before the run nor as after it")
    old_venv = before["venv"]
    for aside in now["asides"]:
        if unmarked(aside) != old_venv:
            problems.append("a moved-aside venv differs from the venv it was")
    return problems


def trial(slot: Slot, kill_at: int, step: str, before: dict, after: dict, reference: dict) -> Outcome:
    reset(slot)
    result = killed_run(slot, kill_at)
    outcome = Outcome(kill_at, step, killed=result.returncode == -9)
    if not outcome.killed:
        outcome.problems.append(f"not killed: exit {result.returncode}\n{result.stderr}")
        return outcome
    outcome.problems += partial_problems(managed_state(slot.home), before, after)
    report, rerun = berdl(slot.home, slot.scratch, status=None, **new_settings(slot))
    if rerun.returncode != 0 or report.get("ok") is not True:
        outcome.problems.append(f"the re-run failed: exit {rerun.returncode}\n{rerun.stderr}")
    outcome.problems += diff(reference, tree(slot.home, home=slot.home))
    return outcome


@pytest.fixture(scope="module")
def old_templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("old-templates")
    for template in PACKAGED_TEMPLATES.glob("*.j2"):
        (folder / template.name).write_bytes(b"# an older version\n" + template.read_bytes())
    return folder


@pytest.mark.parametrize("scenario", ["cold", "update"])
def test_killed_at_every_operation_the_rerun_completes_and_nothing_is_partial(
    tmp_path: Path, old_templates: Path, scenario: str
) -> None:
    slots = [Slot(tmp_path / f"w{number}", scenario) for number in range(WORKERS)]
    for slot in slots:
        slot.root.mkdir()
        prepare(slot, old_templates)

    # The uninterrupted run, traced: how many operations there are, and which step each belongs to.
    references, befores, afters = [], [], []
    total = None
    for slot in slots:
        reset(slot)
        befores.append(managed_state(slot.home))
        trace = slot.root / "trace"
        result = killed_run(slot, 0, trace)
        assert result.returncode == 0, result.stderr
        lines = [line.split("\t") for line in trace.read_text().splitlines()]
        assert lines[-1][0] == "total"
        count = int(lines[-1][1])
        assert total in (None, count), "the number of operations differs between homes"
        total = count
        steps = {int(n): step_of(path, slot) for n, _, path in lines[:-1]}
        operations = {int(n): operation for n, operation, _ in lines[:-1]}
        afters.append(managed_state(slot.home))
        references.append(tree(slot.home, home=slot.home))
        again, _ = berdl(slot.home, slot.scratch, **new_settings(slot))
        assert again["changes"] == [], "the reference run is not idempotent"
    assert total is not None
    assert total >= 50

    # Every operation outside the virtualenv build, and a seeded sample of the build's own (its files all
    # live under a temporary name that the final rename publishes, so they are alike).
    venv_ops = [n for n in range(1, total + 1) if steps[n] == "venv"]
    sample = set(random.Random(scenario).sample(venv_ops, min(VENV_SAMPLE, len(venv_ops))))
    renames = {n for n in venv_ops if operations[n] == "rename"}  # the move-aside and the publishing
    # ... and every operation of the restore, including the copy of its marker into the build.
    points = [n for n in range(1, total + 1) if steps[n] != "venv" or n in sample | renames]
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [
            pool.submit(
                lambda share, w: [
                    trial(slots[w], n, steps[n], befores[w], afters[w], references[w]) for n in share
                ],
                points[w::WORKERS],
                w,
            )
            for w in range(WORKERS)
        ]
        outcomes = [outcome for future in futures for outcome in future.result()]

    per_step = Counter(outcome.step for outcome in outcomes)
    failures = [outcome for outcome in outcomes if outcome.problems]
    summary = f"{scenario}: {len(outcomes)} kills, per step {dict(per_step)}, {len(failures)} failures"
    print(summary, file=sys.stderr)
    assert not failures, (
        summary
        + "\n"
        + "\n".join(f"kill at {f.kill_at} ({f.step}): " + "; ".join(f.problems) for f in failures[:10])
    )
    expected_steps = {"home", "dirs", "dotfiles", "venv", "favorites", "lock+ledger"}
    if scenario == "update":
        expected_steps = expected_steps - {"home"} | {"restore"}
    assert set(per_step) == expected_steps


def test_the_harness_notices_a_write_that_is_not_atomic(tmp_path: Path, old_templates: Path) -> None:
    """The same checks, on a berdl-init whose file writes are made in place: a kill between the two halves
    of ~/.bashrc leaves it partial, and the check says so. (Without this, a harness that never looks would
    pass too.)"""
    slot = Slot(tmp_path / "w0", "cold")
    slot.root.mkdir()
    prepare(slot, old_templates)
    before = managed_state(slot.home)
    trace = slot.root / "trace"
    assert killed_run(slot, 0, trace, mutant="write-in-place").returncode == 0
    after = managed_state(slot.home)
    lines = [line.split("\t") for line in trace.read_text().splitlines()[:-1]]
    writes = [int(n) for n, operation, path in lines if operation == "write" and path.endswith("/.bashrc")]
    assert len(writes) == 2

    reset(slot)
    assert killed_run(slot, writes[1], mutant="write-in-place").returncode == -9
    problems = partial_problems(managed_state(slot.home), before, after)
    assert problems == [".bashrc is neither as before the run nor as after it"]
