"""The Jupyter folders that the notebook image points JUPYTER_CONFIG_DIR, _DATA_DIR and _RUNTIME_DIR at."""

from __future__ import annotations

import stat

from berdl_init.plan import Change, MakeDir, PlanContext, SetMode, StepFailed, StepPlan

#: home-relative folder -> mode; runtime holds kernel connection files (keys), so only the user reads it.
FOLDERS = {
    ".jupyter": 0o755,
    ".jupyter/data": 0o755,
    ".jupyter/runtime": 0o700,
}

#: Folders whose mode is enforced even when they exist; the others keep what the user chose.
STRICT_MODES = {".jupyter/runtime"}


def plan(ctx: PlanContext) -> StepPlan:
    changes: list[Change] = []
    for path, mode in FOLDERS.items():
        st = ctx.home.lstat(path)
        if st is None:
            changes.append(MakeDir("mkdir", path, f"mode {mode:o}", mode=mode))
        elif not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
            raise StepFailed(f"~/{path} is {kind}; left as it is")
        elif path in STRICT_MODES and stat.S_IMODE(st.st_mode) != mode:
            changes.append(
                SetMode("chmod", path, f"mode {stat.S_IMODE(st.st_mode):o} -> {mode:o}", mode=mode)
            )
    return StepPlan("dirs", changes)
