"""Running as root: fix the home folder itself (never recursively), then become the user.

A hostPath home that the node creates with DirectoryOrCreate belongs to root:root, mode 0755, so the user
cannot write it. Only this folder is created or chowned as root; every other change is made as the user,
so the kernel's own permission checks apply to anything a user could plant in their home.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from berdl_init.errors import HomeError, SettingsError
from berdl_init.settings import Settings


def is_root() -> bool:
    return os.geteuid() == 0


def home_owner(settings: Settings, home_stat: os.stat_result | None) -> tuple[int, int]:
    """The uid and gid everything should belong to: the settings, else the home's owner.

    A home that is missing or owned by root names no user, and then neither its owner nor its group (root's,
    usually) is taken, unless BERDL_UID=0 asks for root.
    """
    named = home_stat if home_stat is not None and (home_stat.st_uid != 0 or settings.uid == 0) else None
    uid = settings.uid if settings.uid is not None else (named.st_uid if named else None)
    gid = settings.gid if settings.gid is not None else (named.st_gid if named else None)
    missing = [name for name, value in (("BERDL_UID", uid), ("BERDL_GID", gid)) if value is None]
    if uid is None or gid is None:
        raise SettingsError(
            f"{' and '.join(missing)}: not set, and the home does not name a user "
            "(missing or owned by root); set them to the user's ids when running as root"
        )
    return uid, gid


def fix_home(home: Path, uid: int, gid: int) -> None:
    """Create the home folder, or give it to uid:gid, without following a symlink at it."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.mkdir(home, 0o755)
    except FileExistsError:
        pass
    except OSError as error:
        raise HomeError(f"the home {home} is missing and cannot be created: {error.strerror}") from None
    try:
        fd = os.open(home, flags)
    except OSError as error:
        raise HomeError(f"the home {home} cannot be opened as a folder: {error.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            raise HomeError(f"the home {home} is not a folder")
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
    except OSError as error:  # a root-squashed NFS home, a container without CAP_CHOWN
        raise HomeError(f"the home {home} cannot be given to {uid}:{gid}: {error.strerror}") from None
    finally:
        os.close(fd)


def drop_privileges(uid: int, gid: int) -> None:
    """Become uid:gid for good, with gid as the only group."""
    if uid == 0:
        return
    try:
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as error:  # a container without CAP_SETUID or CAP_SETGID
        raise HomeError(f"cannot become uid {uid}, gid {gid}: {error.strerror}") from None
