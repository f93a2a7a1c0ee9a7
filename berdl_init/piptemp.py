"""The folder in the home where the restore's pip unpacks and builds: its TMPDIR.

The pod's /tmp is a small emptyDir (memory or node disk, with a sizeLimit): one large wheel (torch's is
about 2 GB unpacked) would fill it, or get the pod evicted, at every start. The home is sized for the
user's packages, which end up there anyway. The folder is berdl-init's, beside its ledger, made through
safefs (no symlink on the way is followed), mode 0700; it is emptied before and after every pip run, so
what a killed run left is gone at the next one, which a killed restore always has (its marker stays).
"""

from __future__ import annotations

import stat
from pathlib import Path

from berdl_init.errors import UnsafePathError
from berdl_init.safefs import SafeHome
from berdl_init.state import STATE_DIR, make_state_dir

PIP_TMP = f"{STATE_DIR}/tmp"


class PipTemp:
    """The restore's temporary folder in the home `home`."""

    def __init__(self, home: SafeHome) -> None:
        self.home = home
        #: Whether fresh() could not make the folder, so that pip used the pod's /tmp.
        self.unusable = False

    def fresh(self) -> Path | None:
        """The folder, empty; None when it cannot be made (a symlink on the way to it, a folder the user
        cannot write): pip then uses the pod's /tmp."""
        try:
            make_state_dir(self.home)
            self.remove()
            self.home.makedirs(PIP_TMP, mode=0o700)
        except (UnsafePathError, PermissionError, NotADirectoryError):
            self.unusable = True
            return None
        return self.home.absolute(PIP_TMP)

    def remove(self) -> None:
        """Remove the folder and what is in it; anything else at its name (a symlink) goes, unfollowed."""
        found = self.home.lstat(PIP_TMP)
        if found is None:
            return
        if stat.S_ISDIR(found.st_mode):
            self.home.remove_tree(PIP_TMP)
        else:
            self.home.unlink(PIP_TMP)
