"""Whose home this is, before anything in it is changed.

- **Another user's home.** The ledger records the user each run prepared the home for (`owner`). A run
  for another user on it is refused, exit 3, before any change: whatever maps two names to one folder (a
  hub's path template, a typo in a setting, a collision of a hash), two users never share a home, which
  all users' pods could otherwise read and write, running as one uid. `BERDL_RENAMED_FROM` names the
  one earlier owner a run may take the home over from (an account that was renamed).
- **A home of another uid.** The hub BERDL had before the production one (kbase/cdm-jupyterhub) gave each
  user a system uid of their own and made the home theirs, mode 750, recursively. Such a home is left
  exactly as it is (no `chown -R`, which would be the wrong call to make on a user's whole home without
  an operator): one warning names the owner found and the one command an operator runs once.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from berdl_init.state import LEDGER, Ledger

#: The names at the top of the home under which everything berdl-init manages lives: their owners,
#: with the home folder's, tell whose files the home holds (only these are looked at, whatever its size).
TOP_LEVEL = (".bashrc", ".bash_profile", ".jupyter", ".virtualenvs", ".local")


def refusal(ledger: Ledger, user: str, renamed_from: str | None, home: Path) -> str | None:
    """Why a run for `user` may not prepare `home`, whose ledger is `ledger`, or None when it may."""
    owner = ledger.owner
    if owner is None or owner in (user, renamed_from):
        return None
    setting = f"BERDL_RENAMED_FROM={shlex.quote(owner)}" if owner.isprintable() else "BERDL_RENAMED_FROM"
    return (
        f"the home {home} is {_shown(owner)}'s, not {_shown(user)}'s (berdl-init recorded its user in "
        f"~/{LEDGER}): nothing was changed; for an account renamed from {_shown(owner)} to {_shown(user)}, "
        f"set {setting}"
    )


def take_over(ledger: Ledger, user: str) -> str | None:
    """Record `user` as the home's owner; a warning when it was another's (BERDL_RENAMED_FROM)."""
    before, ledger.owner = ledger.owner, user
    if before is None or before == user:
        return None
    return f"the home was {_shown(before)}'s and is {_shown(user)}'s from now on (BERDL_RENAMED_FROM)"


def _shown(name: str) -> str:
    """A user name as a message shows it: on one line, whatever the ledger, which the user can edit, holds."""
    return name if name.isprintable() else repr(name)


@dataclass(frozen=True)
class ForeignOwner:
    path: str  # home-relative: "." for the home folder itself
    uid: int
    gid: int


def foreign_owner(home: Path, home_stat: os.stat_result | None, uid: int) -> ForeignOwner | None:
    """The first of the home folder and its managed top-level entries that belongs to neither `uid` nor
    root (root's are what a kubelet or a copy as root leaves, and berdl-init fixes or works around them)."""
    if home_stat is None:
        return None
    found = [(".", home_stat)]
    for name in TOP_LEVEL:
        try:
            found.append((name, os.lstat(home / name)))
        except OSError:
            continue  # absent, or unreadable to this uid: the steps say so if it matters
    for path, st in found:
        if st.st_uid not in (0, uid):
            return ForeignOwner(path, st.st_uid, st.st_gid)
    return None


def left_alone(home: Path, found: ForeignOwner, uid: int, gid: int) -> str:
    """The warning for a home of another uid: its owner, and the command an operator runs once."""
    what = "the home" if found.path == "." else f"~/{found.path} in the home"
    command = f"chown -R {uid}:{gid} {shlex.quote(str(home))}"
    return (
        f"{what} {home} belongs to uid {found.uid} (gid {found.gid}), not to uid {uid}, as homes of BERDL's "
        f"legacy hub do: berdl-init changed nothing in it, and the notebook cannot use its files until an "
        f"operator runs once, as root, `{command}` (on the node: the home's folder there; deploy/README.md, "
        "Migrating homes)"
    )
