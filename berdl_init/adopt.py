"""A home berdl-init prepares for the first time that already held files: a home BERDL's production hub
(or an older one) left. What changed for its user is said in one line, in the report and in new
terminals (`~/.local/state/berdl-init/what-changed.txt`, which the notebook image's /etc/bash.bashrc
shows while it exists).

Nothing of the user's is changed to take the home over: the steps keep what they find as they always do
(a dotfile of the user's stays and berdl-init's goes beside it; the favorites keep every entry and key;
the user site is read as it is, or installed again into the venv). This module only plans the note, from
what the steps planned.
"""

from __future__ import annotations

from berdl_init.managed import CONFLICT_SUFFIX
from berdl_init.plan import PlanContext, StepPlan, WriteFile
from berdl_init.state import STATE_DIR, Ledger

NOTE = f"{STATE_DIR}/what-changed.txt"
#: Where IPython runs start-up scripts from; BERDL's production image installed its own there.
IPYTHON_STARTUP = ".ipython/profile_default/startup"


def first_run(ledger: Ledger, ledger_warning: str | None) -> bool:
    """Whether this run is berdl-init's first on the home: there was no ledger (an unreadable one, or a
    run without one, says nothing)."""
    return ledger.stored is None and ledger_warning is None


def plan(ctx: PlanContext, plans: list[StepPlan]) -> StepPlan | None:
    """The note for a first run on a home that held files the steps kept beside theirs, merged or read,
    or None (a new home, or one where nothing of the user's met berdl-init's)."""
    line = summary(plans)
    if line is None:
        return None
    step = StepPlan("adopt", warnings=[line])
    data = _note(ctx, line, plans).encode()
    try:
        current = ctx.home.read(NOTE)
    except OSError as error:  # a symlink or a folder in its place: the report still says it
        step.warnings.append(f"~/{NOTE} cannot be written ({error}); it is left as it is")
        return step
    if current != data:
        step.changes.append(
            WriteFile(
                "write", NOTE, "what changed for you, new terminals show it", data, 0o644, current, False
            )
        )
    return step


def summary(plans: list[StepPlan]) -> str | None:
    """What changed for the user, in one line; None when the steps kept, merged or read nothing of theirs."""
    beside = [
        change.path for plan in plans for change in plan.changes if change.path.endswith(CONFLICT_SUFFIX)
    ]
    parts = [f"your ~/{path.removesuffix(CONFLICT_SUFFIX)} stays (berdl-init's: ~/{path})" for path in beside]
    parts += [note for plan in plans for note in plan.notes]
    if not parts:
        return None
    return f"your home was set up for this notebook and kept as it was: {'; '.join(parts)}"


def _note(ctx: PlanContext, line: str, plans: list[StepPlan]) -> str:
    """The note: the line, then what it means, and how to make new terminals stop showing it."""
    settings = ctx.settings
    lines = [line, "", "What this means for you:", f"- Your files are where they were, in {settings.home}."]
    if "venv" in settings.steps:
        lines.append(
            f"- Notebooks run in the venv ~/{settings.venv_rel}: `pip install` in a notebook or a terminal "
            "installs there, and it stays across restarts."
        )
    if any(change.path == f".bash_profile{CONFLICT_SUFFIX}" for plan in plans for change in plan.changes):
        lines.append(
            "- Terminals are login shells, which read ~/.bash_profile alone. If yours does not read "
            "~/.bashrc, where berdl-init activates that venv, take berdl-init's: "
            f"mv ~/.bash_profile{CONFLICT_SUFFIX} ~/.bash_profile"
        )
    try:
        startup = sorted(name for name in ctx.home.listdir(IPYTHON_STARTUP) if name.endswith((".py", ".ipy")))
    except OSError:
        startup = []
    if startup:
        lines.append(
            f"- ~/{IPYTHON_STARTUP} holds start-up scripts ({', '.join(startup)}), left as they are. IPython "
            "runs them in every kernel, in order, and stops at the first that fails (one warning in the "
            "server's log): those of BERDL's previous image import berdl_notebook_utils, which this image "
            "does not have."
        )
    lines += ["", f"New terminals show the first line of this file until you delete it: rm ~/{NOTE}"]
    return "\n".join(lines) + "\n"
