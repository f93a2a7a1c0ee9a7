"""The plan: what each step would change, computed first; then applying it, or only showing it.

Steps never change the home themselves: they return Change objects. `--dry-run` and `--check` show the
same list that a real run applies, so the preview cannot differ from what happens.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from berdl_init.errors import SettingsError
from berdl_init.safefs import SafeHome
from berdl_init.settings import Settings
from berdl_init.state import Ledger, sha256


@dataclass
class PlanContext:
    """What a step may read while planning."""

    settings: Settings
    home: SafeHome
    #: The ledger as it will be saved after the run: steps record their bookkeeping here.
    ledger: Ledger


@dataclass
class ApplyContext:
    home: SafeHome
    ledger: Ledger
    #: What a change found while it was applied and the report must say (the step's name is added).
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    """One change to the home. `path` is relative to the home."""

    action: str
    path: str
    detail: str

    def apply(self, ctx: ApplyContext) -> None:
        raise NotImplementedError

    def preview(self) -> str:
        """Extra lines shown by --dry-run and --check (a diff for files)."""
        return ""


@dataclass(frozen=True)
class MakeDir(Change):
    mode: int

    def apply(self, ctx: ApplyContext) -> None:
        ctx.home.makedirs(self.path, self.mode)


@dataclass(frozen=True)
class SetMode(Change):
    mode: int

    def apply(self, ctx: ApplyContext) -> None:
        ctx.home.chmod(self.path, self.mode)


@dataclass(frozen=True)
class WriteFile(Change):
    data: bytes
    mode: int
    #: The bytes there now (None when absent), for the diff.
    old: bytes | None
    #: Record the hash in the ledger, so a later run recognises the file as still berdl-init's.
    remember: bool

    def apply(self, ctx: ApplyContext) -> None:
        ctx.home.write(self.path, self.data, self.mode)
        if self.remember:
            ctx.ledger.files[self.path] = sha256(self.data)

    def preview(self) -> str:
        import difflib  # only dry runs show diffs

        try:
            old = (self.old or b"").decode().splitlines(keepends=True)
            new = self.data.decode().splitlines(keepends=True)
        except UnicodeDecodeError:
            return f"    (binary, {len(self.data)} bytes)\n"
        before = f"a/{self.path}" if self.old is not None else "/dev/null"
        lines = difflib.unified_diff(old, new, before, f"b/{self.path}")
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
        )


def kept_mode(home: SafeHome, rel: str, default: int) -> int:
    """The mode a replaced file keeps: its own (a chmod of the user's, say), or `default` for a new one."""
    st = home.lstat(rel)
    return stat.S_IMODE(st.st_mode) if st is not None and stat.S_ISREG(st.st_mode) else default


class StepFailed(Exception):
    """A step cannot do its work; the others still run (exit 3 only under --strict)."""


@dataclass
class StepPlan:
    name: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Why planning failed, if it did; then `changes` is empty.
    error: str | None = None
    seconds: float = 0.0
    #: What the step found that a user taking over a home from elsewhere should hear (adopt.py says it).
    notes: list[str] = field(default_factory=list)


Planner = Callable[[PlanContext], StepPlan]


def make_plan(ctx: PlanContext, planners: dict[str, Planner]) -> list[StepPlan]:
    """Plan every selected step. A SettingsError (a template that does not render) propagates:
    it must stop the run before anything is changed."""
    plans = []
    for name in ctx.settings.steps:
        started = time.perf_counter()
        try:
            plan = planners[name](ctx)
        except SettingsError:
            raise
        except (StepFailed, OSError) as error:
            plan = StepPlan(name, error=_reason(error))
        plan.seconds = time.perf_counter() - started
        plans.append(plan)
    return plans


@dataclass
class StepOutcome:
    name: str
    status: str  # ok | changed | failed
    seconds: float
    message: str
    #: The changes made (in a dry run: the changes planned).
    changes: list[Change]


def apply_plan(plans: list[StepPlan], ctx: ApplyContext) -> list[StepOutcome]:
    """Apply each step's changes in order; a failing change fails its step and the next steps still run."""
    outcomes = []
    for plan in plans:
        started = time.perf_counter()
        applied: list[Change] = []
        error = plan.error
        if error is None:
            for change in plan.changes:
                try:
                    change.apply(ctx)
                except OSError as failure:
                    error = f"{change.action} ~/{change.path}: {_reason(failure)}"
                    break
                applied.append(change)
        plan.warnings.extend(ctx.warnings)
        ctx.warnings.clear()
        seconds = plan.seconds + time.perf_counter() - started
        outcomes.append(_outcome(plan, applied, error, seconds))
    return outcomes


def preview_plan(plans: list[StepPlan]) -> list[StepOutcome]:
    """The outcomes a dry run reports: every planned change, none applied."""
    return [_outcome(plan, plan.changes, plan.error, plan.seconds) for plan in plans]


def _outcome(plan: StepPlan, changes: list[Change], error: str | None, seconds: float) -> StepOutcome:
    if error is not None:
        return StepOutcome(plan.name, "failed", seconds, error, changes)
    if changes:
        return StepOutcome(plan.name, "changed", seconds, f"{len(changes)} change(s)", changes)
    return StepOutcome(plan.name, "ok", seconds, "nothing to do", changes)


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror if not error.filename else f"{error.strerror}: {error.filename}"
    return str(error)
