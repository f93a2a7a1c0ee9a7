"""The Jupyter folders that the notebook image points JUPYTER_CONFIG_DIR, _DATA_DIR and _RUNTIME_DIR at."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from berdl_init.plan import Change, MakeDir, PlanContext, SetMode, StepFailed, StepPlan


@dataclass(frozen=True)
class Folder:
    #: The mode a folder berdl-init creates gets.
    mode: int
    #: Permission bits an existing folder must not have; the others (the sticky bit jupyter_client adds to
    #: the runtime folder, the setgid bit of a shared volume, what the user chose) are left alone.
    forbidden: int = 0


#: home-relative folder -> its policy. runtime holds kernel connection files (keys): group and others get
#: nothing there. The other two keep whatever mode the user chose.
FOLDERS = {
    ".jupyter": Folder(0o755),
    ".jupyter/data": Folder(0o755),
    ".jupyter/runtime": Folder(0o700, forbidden=0o077),
}


def plan(ctx: PlanContext) -> StepPlan:
    changes: list[Change] = []
    for path, folder in FOLDERS.items():
        st = ctx.home.lstat(path)
        if st is None:
            changes.append(MakeDir("mkdir", path, f"mode {folder.mode:o}", mode=folder.mode))
        elif not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
            raise StepFailed(f"~/{path} is {kind}; left as it is")
        elif (mode := stat.S_IMODE(st.st_mode)) & folder.forbidden:
            fixed = mode & ~folder.forbidden
            changes.append(SetMode("chmod", path, f"mode {mode:o} -> {fixed:o}", mode=fixed))
    return StepPlan("dirs", changes)
