"""One module per step. Each has `plan(ctx) -> StepPlan`, which reads the home and returns the changes
it would make, never making them (see berdl_init/plan.py)."""

from __future__ import annotations

from berdl_init.plan import Planner
from berdl_init.steps import dirs, dotfiles, favorites, venv

PLANNERS: dict[str, Planner] = {
    "dirs": dirs.plan,
    "dotfiles": dotfiles.plan,
    "venv": venv.plan,
    "favorites": favorites.plan,
}
