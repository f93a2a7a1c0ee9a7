"""Measuring commands: wall time, peak memory and file-system calls, subject and baseline interleaved.

Both are run through GNU time (`/usr/bin/time -f %M`), whose own start-up is the same for both.

Absolute times on a shared machine drift from minute to minute; a ratio of medians taken from runs that
alternate between the subject and its baseline holds.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

Command = Sequence[str]


@dataclass
class Sample:
    seconds: float
    max_rss_kib: int


def run_once(
    command: Command, env: dict[str, str] | None = None, before: Callable[[], None] | None = None
) -> Sample:
    """Run `command` once: its wall time, and its peak resident memory as GNU time reports it.

    (wait4's own figure would not do: a child forked from this big Python process starts with its size.)
    """
    if before is not None:
        before()
    with tempfile.NamedTemporaryFile(prefix="berdl-bench-time-", suffix=".txt") as report:
        timed = ["/usr/bin/time", "-f", "%M", "-o", report.name, *command]
        started = time.perf_counter()
        result = subprocess.run(
            timed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}")
        max_rss_kib = int(Path(report.name).read_text().split()[-1])
    return Sample(seconds, max_rss_kib)


@dataclass
class Comparison:
    subject: list[Sample]
    baseline: list[Sample]

    @property
    def subject_median(self) -> float:
        return statistics.median(sample.seconds for sample in self.subject)

    @property
    def baseline_median(self) -> float:
        return statistics.median(sample.seconds for sample in self.baseline)

    @property
    def time_ratio(self) -> float:
        return self.subject_median / self.baseline_median

    @property
    def memory_ratio(self) -> float:
        return max(s.max_rss_kib for s in self.subject) / max(s.max_rss_kib for s in self.baseline)


@dataclass
class Case:
    """A command to time, with what must happen before each run (not timed) to put it in its start state."""

    command: Command
    env: dict[str, str] | None = None
    before: Callable[[], None] | None = None


def compare(subject: Case, baseline: Case, rounds: int, warmup: int = 1) -> Comparison:
    """Run subject and baseline alternately `rounds` times each, after `warmup` untimed rounds."""
    for _ in range(warmup):
        run_once(subject.command, subject.env, subject.before)
        run_once(baseline.command, baseline.env, baseline.before)
    result = Comparison([], [])
    for _ in range(rounds):
        result.subject.append(run_once(subject.command, subject.env, subject.before))
        result.baseline.append(run_once(baseline.command, baseline.env, baseline.before))
    return result


def count_syscalls_under(command: Command, env: dict[str, str], folder: Path) -> int:
    """File-system calls of `command` (and its children) whose path, or whose descriptor's path, is under
    `folder`, as strace -y prints them."""
    with tempfile.NamedTemporaryFile(prefix="berdl-bench-strace-", suffix=".txt") as log:
        subprocess.run(
            ["strace", "-f", "-y", "-qq", "-e", "trace=%file,%desc", "-o", log.name, *command],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lines = Path(log.name).read_text(errors="replace").splitlines()
    marker = re.compile(re.escape(str(folder)) + r"(/|>|\"|$)")
    return sum(1 for line in lines if marker.search(line))
