"""The user's `pip install --user` packages, and whether the venv's python reads them.

BERDL's production hub set PIP_USER=1, so what its users installed went to the user site,
`~/.local/lib/pythonX.Y/site-packages`. A venv with the image's packages (system site packages) reads
the user site of its own X.Y, so those keep working as they are. A user site of another X.Y (the image
moved to another minor Python), or any user site under a venv without system site packages, is not read:
its distributions are installed again into the venv, as a venv rebuilt on a new Python gets its old
packages again (steps/venv.py, restore.py). The ledger records each user site installed again, so that
happens once; later rebuilds of the venv carry those packages on.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass

from berdl_init.safefs import SafeHome

USER_LIB = ".local/lib"
_SITE_FOLDER = re.compile(r"^python(\d+\.\d+)$")


@dataclass(frozen=True)
class UserSite:
    rel: str  # home-relative: .local/lib/pythonX.Y/site-packages
    minor: str  # X.Y


def is_user_site(rel: str) -> bool:
    """Whether a home-relative folder is a user site (a restore's source may be one, or an old venv)."""
    parts = rel.split("/")
    return len(parts) == 4 and "/".join(parts[:2]) == USER_LIB and bool(_SITE_FOLDER.match(parts[2]))


def found(home: SafeHome) -> list[UserSite]:
    """The user sites of the home that hold at least one distribution, by X.Y."""
    try:
        names = home.listdir(USER_LIB)
    except OSError:
        return []  # a symlink or a file on the way (nothing is read through it), or no permission
    sites = []
    for name in sorted(names):
        match = _SITE_FOLDER.match(name)
        if match is None:
            continue
        rel = f"{USER_LIB}/{name}/site-packages"
        try:
            st = home.lstat(rel)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue
            if any(entry.endswith(".dist-info") for entry in home.listdir(rel)):
                sites.append(UserSite(rel, match.group(1)))
        except OSError:
            continue
    return sites


def unread(
    sites: list[UserSite], venv_minor: str, sees_user_site: bool, done: dict[str, str]
) -> list[UserSite]:
    """The user sites whose packages the venv's python does not import, and that were not installed again
    into a venv before (`done`: the ledger's record)."""
    return [
        site for site in sites if site.rel not in done and (site.minor != venv_minor or not sees_user_site)
    ]
