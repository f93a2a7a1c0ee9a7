"""The run's report: one JSON object for programs (--json), one line per change for people."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from berdl_init import __version__
from berdl_init.plan import Change, StepOutcome
from berdl_init.settings import STEP_ORDER


@dataclass
class ReportedChange:
    step: str
    change: Change


@dataclass
class Report:
    home: str
    dry_run: bool
    changes: list[ReportedChange] = field(default_factory=list)
    steps: list[StepOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Why no step ran, when none did (the home was left alone); None: the steps not run were not selected.
    not_run: str | None = None

    @property
    def ok(self) -> bool:
        return all(step.status != "failed" for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        ran = {step.name: step for step in self.steps}
        steps = []
        for name in STEP_ORDER:
            outcome = ran.get(name)
            if outcome is None:
                why = self.not_run or "not selected"
                steps.append({"name": name, "status": "skipped", "seconds": 0.0, "message": why})
            else:
                steps.append(
                    {
                        "name": name,
                        "status": outcome.status,
                        "seconds": round(outcome.seconds, 4),
                        "message": outcome.message,
                    }
                )
        return {
            "version": __version__,
            "home": self.home,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "changes": [
                {
                    "step": item.step,
                    "action": item.change.action,
                    "path": item.change.path,
                    "detail": item.change.detail,
                }
                for item in self.changes
            ],
            "steps": steps,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 4),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def human_lines(self, *, previews: bool, verbose: bool) -> list[str]:
        lines = []
        for item in self.changes:
            path = "~" if item.change.path == "." else f"~/{item.change.path}"
            lines.append(f"[{item.step}] {item.change.action} {path} ({item.change.detail})")
            if previews and (preview := item.change.preview()):
                lines.extend(preview.rstrip("\n").split("\n"))
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        for step in self.steps:
            if step.status == "failed":
                lines.append(f"[{step.name}] failed: {step.message}")
            elif verbose:
                lines.append(f"[{step.name}] {step.status} in {step.seconds:.3f} s")
        lines.append(self.summary())
        return lines

    def summary(self) -> str:
        failed = [step.name for step in self.steps if step.status == "failed"]
        verb = "pending" if self.dry_run else "made"
        parts = [
            f"{len(self.changes)} change{'s' if len(self.changes) != 1 else ''} {verb}",
            f"{len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}",
            f"failed: {', '.join(failed)}" if failed else "all steps ok",
        ]
        return f"berdl-init {__version__}: {self.home}: {', '.join(parts)}, {self.seconds:.2f} s"
