"""Benchmarks of berdl-init, the spawner and the time to JupyterLab, each a ratio against a baseline run
in the same session.

    python bench/run.py [--quick] [--parts PART...] [--reuse-images] [--output bench/results.json]

Prints a table and writes the figures as JSON. --quick uses small homes and few rounds: it checks that
the benchmark still runs, not the figures. --parts runs some of berdl-init, spawner and ttl (all three
by default); ttl needs what tests/e2e needs (time_to_lab.py). `--parts load` runs the load test of the
whole local stack (under_load.py), which is not in the default set: it takes about 15 minutes. See
bench/README.md for each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

# Run as a script (python bench/run.py), so its siblings import by their names; localhub comes from the
# editable install.
from big_home import fill_home
from harness import Case, Comparison, compare, count_syscalls_under
from spawner_bench import measure_spawner
from time_to_lab import measure_time_to_lab, missing_requirement, missing_stack_requirement
from under_load import measure_load, print_load_table

from localhub.wheels import fake_ipykernel_wheel

BENCH = Path(__file__).resolve().parent
BERDL_INIT = str(Path(sys.executable).parent / "berdl-init")
BASE_PYTHON = str(Path(getattr(sys, "_base_executable", None) or sys.executable))


@dataclass
class Figure:
    name: str
    value: float
    target: str
    met: bool
    detail: str


@dataclass
class Scale:
    rounds: int
    cold_rounds: int
    big_folders: int
    files_per_folder: int


FULL = Scale(rounds=21, cold_rounds=5, big_folders=2000, files_per_folder=100)
QUICK = Scale(rounds=2, cold_rounds=1, big_folders=20, files_per_folder=10)


def ratio_figure(name: str, comparison: Comparison, at_most: float) -> Figure:
    ratio = comparison.time_ratio
    detail = f"{comparison.subject_median * 1000:.0f} ms vs {comparison.baseline_median * 1000:.0f} ms"
    return Figure(name, round(ratio, 3), f"<= {at_most}", ratio <= at_most, detail)


# -- homes and environments ----------------------------------------------------------------------


def berdl_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BERDL_", "VIRTUALENV_"))}
    env.update(BERDL_USER="bench", BERDL_UID=str(os.getuid()), BERDL_GID=str(os.getgid()))
    return env


def berdl(home: Path) -> list[str]:
    return [BERDL_INIT, "--home", str(home)]


def prepared_home(path: Path, wheels: Path) -> Path:
    """A home berdl-init has prepared, its venv holding an ipykernel as the notebook image's does
    (the interpreter here has none): the kernelspec is then complete and a warm run has nothing to do."""
    subprocess.run(berdl(path), env=berdl_env(), check=True, stdout=subprocess.DEVNULL)
    venv_python = path / ".virtualenvs" / "envs" / "bench_default_env" / "bin" / "python"
    install = [str(venv_python), "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    subprocess.run([*install, str(fake_ipykernel_wheel(wheels))], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(berdl(path), env=berdl_env(), check=True, stdout=subprocess.DEVNULL)
    return path


def image_app_data(work: Path) -> Path:
    """virtualenv's app data as the init image prepares it when it is built (read-only at spawn time)."""
    app_data = work / "image-app-data"
    target = work / "image-app-data-venv"
    command = [sys.executable, "-m", "virtualenv", "-q", "--app-data", str(app_data), "--python", BASE_PYTHON]
    subprocess.run([*command, "--system-site-packages", "--no-seed", str(target)], check=True)
    shutil.rmtree(target)
    return app_data


def remover(path: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(path, ignore_errors=True)


# -- the figures ---------------------------------------------------------------------------------


def warm_figures(scale: Scale, empty: Path) -> list[Figure]:
    env = berdl_env()
    floor = Case([sys.executable, "-c", "import pydantic_settings"], env)
    warm = compare(Case(berdl(empty), env), floor, scale.rounds)
    subject_kib = max(sample.max_rss_kib for sample in warm.subject)
    floor_kib = max(sample.max_rss_kib for sample in warm.baseline)
    return [
        ratio_figure("warm run, wall median / import pydantic_settings", warm, 1.2),
        Figure(
            "warm run, peak memory / import pydantic_settings",
            round(warm.memory_ratio, 3),
            "<= 1.2",
            warm.memory_ratio <= 1.2,
            f"{subject_kib} KiB vs {floor_kib} KiB",
        ),
    ]


def cold_figures(scale: Scale, work: Path) -> list[Figure]:
    env = berdl_env()
    cold_home = work / "cold"
    cold_env = {**env, "VIRTUALENV_OVERRIDE_APP_DATA": str(image_app_data(work))}
    cold = Case(berdl(cold_home), cold_env, remover(cold_home))

    venv_dir = work / "stdlib-venv"
    stdlib = Case(
        [BASE_PYTHON, "-m", "venv", "--system-site-packages", str(venv_dir)], env, remover(venv_dir)
    )

    # virtualenv's default app data is ~/.local/share/virtualenv: in an empty home it starts empty too.
    virtualenv_dir = work / "virtualenv"
    app_data = work / "virtualenv-app-data"
    virtualenv_command = [sys.executable, "-m", "virtualenv", "-q", "--system-site-packages"]
    virtualenv_command += ["--app-data", str(app_data), "--python", BASE_PYTHON, str(virtualenv_dir)]
    virtualenv = Case(
        virtualenv_command, env, lambda: [remover(path)() for path in (virtualenv_dir, app_data)]
    )
    return [
        ratio_figure("cold run / python -m venv with pip", compare(cold, stdlib, scale.cold_rounds), 0.15),
        ratio_figure(
            "cold run / virtualenv with default seeding", compare(cold, virtualenv, scale.cold_rounds), 0.6
        ),
    ]


def big_home_figures(scale: Scale, empty: Path, big: Path) -> list[Figure]:
    env = berdl_env()
    files = fill_home(big, scale.big_folders, scale.files_per_folder)
    versus_empty = compare(Case(berdl(big), env), Case(berdl(empty), env), scale.rounds)
    # The successor's hook gave homes to their user: every inode changes owner. The data is handed back
    # (untimed) before each timed chown; the managed files stay as berdl-init left them.
    data = str(big / "data")
    give_back = ["chown", "-R", f"{os.getuid()}:{os.getgid()}", data]
    chown = Case(["chown", "-R", "1000:1000", data], env, lambda: subprocess.run(give_back, check=True))
    versus_chown = compare(Case(berdl(big), env), chown, scale.rounds)
    speedup = 1 / versus_chown.time_ratio
    figures = [
        ratio_figure(f"warm run, home with {files:,} files / empty home", versus_empty, 1.1),
        Figure(
            f"chown -R of the {files:,} files to their user / warm run on that home (speed-up)",
            round(speedup, 2),
            ">= 10",
            speedup >= 10,
            f"chown -R {versus_chown.baseline_median * 1000:.0f} ms, "
            f"berdl-init {versus_chown.subject_median * 1000:.0f} ms",
        ),
    ]
    empty_calls = count_syscalls_under(berdl(empty), env, empty)
    big_calls = count_syscalls_under(berdl(big), env, big)
    figures.append(
        Figure(
            "file-system calls under the home, warm run",
            float(max(empty_calls, big_calls)),
            "<= 100, equal for both homes",
            max(empty_calls, big_calls) <= 100 and empty_calls == big_calls,
            f"empty home {empty_calls}, {files:,}-file home {big_calls}",
        )
    )
    return figures


PARTS = ("berdl-init", "spawner", "ttl", "load")
#: What runs without --parts: the load test takes a quarter of an hour, so it is asked for by name.
DEFAULT_PARTS = ("berdl-init", "spawner", "ttl")


def measure(scale: Scale, work: Path, quick: bool, parts: list[str]) -> list[Figure]:
    figures: list[Figure] = []
    if "berdl-init" in parts:
        empty = prepared_home(work / "empty", work / "wheels")
        big = prepared_home(work / "big", work / "wheels")
        figures += warm_figures(scale, empty)
        figures += cold_figures(scale, work)
        figures += big_home_figures(scale, empty, big)
    if "spawner" in parts:
        figures += [Figure(**figure) for figure in measure_spawner(quick)]
    return figures


def source_commit() -> str:
    """The commit measured, with "+changes" when the work tree differs from it: a figure is only
    comparable with another of the same code."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=BENCH.parent, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def print_table(figures: list[Figure]) -> None:
    width = max(len(figure.name) for figure in figures)
    print(f"{'figure':<{width}}  {'value':>8}  {'target':<28}  met  detail")
    for figure in figures:
        met = "yes" if figure.met else "NO"
        print(f"{figure.name:<{width}}  {figure.value:>8}  {figure.target:<28}  {met:<3}  {figure.detail}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small homes, few rounds: checks the bench runs")
    parser.add_argument("--output", type=Path, default=BENCH / "results.json")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS), help="what to measure"
    )
    parser.add_argument(
        "--reuse-images", action="store_true", help="ttl, load: play the images already built, build none"
    )
    args = parser.parse_args()
    if "berdl-init" in args.parts and not shutil.which("strace"):
        parser.error("strace is needed (scripts/setup installs it)")
    missing = missing_requirement() if "ttl" in args.parts else None
    if missing:
        parser.error(f"ttl: {missing}; --parts berdl-init spawner leaves the time to JupyterLab out")
    missing = missing_stack_requirement() if "load" in args.parts else None
    if missing:
        parser.error(f"load: {missing}")

    started, commit = time.time(), source_commit()
    with tempfile.TemporaryDirectory(prefix="berdl-bench-") as work:
        figures = measure(QUICK if args.quick else FULL, Path(work), args.quick, args.parts)
    starts: list[dict[str, object]] = []
    if "ttl" in args.parts:
        ttl_figures, starts = measure_time_to_lab(args.quick, args.reuse_images)
        figures += [Figure(**figure) for figure in ttl_figures]
    load = measure_load(args.quick, args.reuse_images) if "load" in args.parts else None
    if figures:
        print_table(figures)
    if load is not None:
        print_load_table(load)
    document = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "commit": commit,
        "seconds": round(time.time() - started, 1),
        "parts": args.parts,
        "figures": [asdict(figure) for figure in figures],
        "time_to_lab_starts": starts,
    }
    if load is not None:
        document["load"] = load
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
