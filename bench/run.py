"""Benchmarks of berdl-init (and the spawner), each a ratio against a baseline run in the same session.

    python bench/run.py [--quick] [--output bench/results.json]

Prints a table and writes the figures as JSON. --quick uses small homes and few rounds: it checks that
the benchmark still runs, not the figures.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Case, compare, count_syscalls_under  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.wheels import fake_ipykernel_wheel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
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


FULL = Scale(rounds=15, cold_rounds=5, big_folders=2000, files_per_folder=100)
QUICK = Scale(rounds=2, cold_rounds=1, big_folders=20, files_per_folder=10)


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
    wheel = fake_ipykernel_wheel(wheels)
    subprocess.run(
        [str(venv_python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(berdl(path), env=berdl_env(), check=True, stdout=subprocess.DEVNULL)
    return path


def fill_home(home: Path, folders: int, files_per_folder: int) -> int:
    """A home holding many small files, the way a user's data and code piles up."""
    for index in range(folders):
        folder = home / "data" / f"d{index:04d}"
        folder.mkdir(parents=True)
        for number in range(files_per_folder):
            (folder / f"f{number:03d}.txt").write_bytes(b"some data\n")
    return folders * files_per_folder


def remover(path: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(path, ignore_errors=True)


def measure(scale: Scale, work: Path) -> list[Figure]:
    env = berdl_env()
    figures: list[Figure] = []
    floor = Case([sys.executable, "-c", "import pydantic_settings"], env)

    empty = prepared_home(work / "empty", work / "wheels")
    warm = compare(Case(berdl(empty), env), floor, scale.rounds)
    figures.append(
        _figure("warm run, wall median / import pydantic_settings", warm.time_ratio, 1.2, warm_detail(warm))
    )
    figures.append(
        _figure(
            "warm run, peak memory / import pydantic_settings",
            warm.memory_ratio,
            1.2,
            f"{max(s.max_rss_kib for s in warm.subject)} KiB vs {max(s.max_rss_kib for s in warm.baseline)} KiB",
        )
    )

    cold_home = work / "cold"
    cold = Case(berdl(cold_home), env, remover(cold_home))
    venv_dir = work / "stdlib-venv"
    stdlib = Case([BASE_PYTHON, "-m", "venv", "--system-site-packages", str(venv_dir)], env, remover(venv_dir))
    versus_venv = compare(cold, stdlib, scale.cold_rounds)
    figures.append(
        _figure("cold run / python -m venv with pip", versus_venv.time_ratio, 0.15, warm_detail(versus_venv))
    )
    virtualenv_dir = work / "virtualenv"
    app_data = work / "virtualenv-app-data"
    plain_virtualenv = Case(
        [sys.executable, "-m", "virtualenv", "-q", "--system-site-packages", "--app-data", str(app_data)]
        + ["--python", BASE_PYTHON, str(virtualenv_dir)],
        env,
        remover(virtualenv_dir),
    )
    versus_virtualenv = compare(cold, plain_virtualenv, scale.cold_rounds)
    figures.append(
        _figure(
            "cold run / virtualenv with default seeding",
            versus_virtualenv.time_ratio,
            0.6,
            warm_detail(versus_virtualenv),
        )
    )

    big = prepared_home(work / "big", work / "wheels")
    files = fill_home(big, scale.big_folders, scale.files_per_folder)
    big_warm = compare(Case(berdl(big), env), Case(berdl(empty), env), scale.rounds)
    figures.append(
        _figure(
            f"warm run, home with {files:,} files / empty home", big_warm.time_ratio, 1.1, warm_detail(big_warm)
        )
    )
    chown = compare(
        Case(berdl(big), env), Case(["chown", "-R", f"{os.getuid()}:{os.getgid()}", str(big)], env), scale.rounds
    )
    speedup = 1 / chown.time_ratio
    figures.append(
        Figure(
            f"chown -R of the {files:,}-file home / warm run on it (speed-up)",
            round(speedup, 2),
            ">= 10",
            speedup >= 10,
            f"chown -R {chown.baseline_median * 1000:.0f} ms, berdl-init {chown.subject_median * 1000:.0f} ms",
        )
    )

    if shutil.which("strace"):
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


def _figure(name: str, ratio: float, at_most: float, detail: str) -> Figure:
    return Figure(name, round(ratio, 3), f"<= {at_most}", ratio <= at_most, detail)


def warm_detail(comparison) -> str:
    return f"{comparison.subject_median * 1000:.0f} ms vs {comparison.baseline_median * 1000:.0f} ms"


def print_table(figures: list[Figure]) -> None:
    width = max(len(figure.name) for figure in figures)
    print(f"{'figure':<{width}}  {'value':>8}  {'target':<28}  met  detail")
    for figure in figures:
        met = "yes" if figure.met else "NO"
        print(f"{figure.name:<{width}}  {figure.value:>8}  {figure.target:<28}  {met:<3}  {figure.detail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small homes, few rounds: checks the bench runs")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()

    scale = QUICK if args.quick else FULL
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="berdl-bench-", dir=os.environ.get("BENCH_DIR")) as work:
        figures = measure(scale, Path(work))
    print_table(figures)
    document = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "seconds": round(time.time() - started, 1),
        "figures": [asdict(figure) for figure in figures],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
