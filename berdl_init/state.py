"""What berdl-init remembers in the home between runs, and the lock that serialises runs on one home.

The ledger records the sha256 of every file berdl-init last wrote. A file whose bytes still have that hash
is berdl-init's to update; any other content is the user's and is never overwritten. It also caches, per
template, the hash of its inputs and of its output, so a run whose templates and variables have not
changed knows the render's hash without importing Jinja2.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from berdl_init.errors import HomeError, UnsafePathError
from berdl_init.safefs import SafeHome

STATE_PARENT = ".local/state"
STATE_DIR = f"{STATE_PARENT}/berdl-init"
LEDGER = f"{STATE_DIR}/ledger.json"
LOCK = f"{STATE_DIR}/lock"
LEDGER_FORMAT = 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Ledger:
    #: home-relative path -> sha256 of the bytes berdl-init last wrote there
    files: dict[str, str] = field(default_factory=dict)
    #: template name -> {"inputs": sha256 of template and variables, "output": sha256 of the render}
    renders: dict[str, dict[str, str]] = field(default_factory=dict)
    #: interpreter's real path -> {"identity": its file's identity, "version": the X.Y.Z it runs as}
    interpreters: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The user whose home this is (BERDL_USER of the runs that prepared it): a run for another user is
    #: refused (berdl_init/homeowner.py). None in a ledger written before berdl-init recorded it.
    owner: str | None = None
    #: A user site berdl-init installed again into the venv (home-relative site-packages folder of
    #: `pip install --user` on another Python) -> the X.Y of the venv it went into (berdl_init/usersite.py).
    user_sites: dict[str, str] = field(default_factory=dict)
    #: The bytes this ledger was read from, so that an unchanged ledger is not written again.
    stored: bytes | None = field(default=None, compare=False, repr=False)

    def to_bytes(self) -> bytes:
        document: dict[str, object] = {
            "format": LEDGER_FORMAT,
            "files": self.files,
            "renders": self.renders,
            "interpreters": self.interpreters,
        }
        # Written only when known, so a ledger berdl-init has nothing new for keeps its bytes.
        if self.owner is not None:
            document["owner"] = self.owner
        if self.user_sites:
            document["user_sites"] = self.user_sites
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Ledger:
        try:
            document = json.loads(data)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(document, dict) or document.get("format") != LEDGER_FORMAT:
            raise ValueError("unknown ledger format")
        files = document.get("files", {})
        renders = document.get("renders", {})
        interpreters = document.get("interpreters", {})
        if not _is_str_map(files) or not isinstance(renders, dict) or not isinstance(interpreters, dict):
            raise ValueError("malformed ledger")
        owner = document.get("owner")
        user_sites = document.get("user_sites", {})
        return cls(
            files=dict(files),
            renders={k: v for k, v in renders.items() if _is_str_map(v)},
            interpreters={k: v for k, v in interpreters.items() if _is_str_map(v)},
            owner=owner if isinstance(owner, str) and owner else None,
            user_sites=dict(user_sites) if _is_str_map(user_sites) else {},
            stored=data,
        )


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


@dataclass(frozen=True)
class LedgerRead:
    """A ledger as read, with the identity of its file then (None: no file, or none that could be read)."""

    ledger: Ledger
    warning: str | None
    identity: tuple[int, ...] | None


def _identity(st: os.stat_result) -> tuple[int, ...]:
    # Every save replaces the file (a new inode), so a file with the same identity holds the same bytes.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_ledger(home: SafeHome) -> LedgerRead:
    """The ledger, a warning when it was unreadable, and which file was read.

    An unreadable ledger is treated as empty, which is the safe direction: files berdl-init cannot prove
    it wrote count as the user's and are kept.
    """
    try:
        found = home.read_with_stat(LEDGER)
    except OSError as error:
        warning = f"~/{LEDGER} cannot be read ({error}); every existing dotfile is treated as the user's"
        return LedgerRead(Ledger(), warning, None)
    if found is None:
        return LedgerRead(Ledger(), None, None)
    data, st = found
    try:
        return LedgerRead(Ledger.from_bytes(data), None, _identity(st))
    except ValueError:
        warning = (
            f"~/{LEDGER} is not a ledger berdl-init wrote; every existing dotfile is treated as the user's"
        )
        return LedgerRead(Ledger(), warning, None)


def read_ledger_again(home: SafeHome, earlier: LedgerRead) -> LedgerRead:
    """The ledger once the lock is held: `earlier` when its file is still the one read then (a warm run
    reads it once), else read again (another run saved it meanwhile)."""
    if earlier.identity is not None:
        try:
            st = home.lstat(LEDGER)
        except OSError:
            st = None
        if st is not None and _identity(st) == earlier.identity:
            return earlier
    return read_ledger(home)


def save_ledger(home: SafeHome, ledger: Ledger) -> None:
    """Write the ledger when it differs from what was read, so an idle run changes no mtime."""
    data = ledger.to_bytes()
    if data != ledger.stored:
        home.write(LEDGER, data, mode=0o600)
        ledger.stored = data


def make_state_dir(home: SafeHome) -> None:
    """Make berdl-init's folder in the home (raises UnsafePathError, PermissionError)."""
    home.makedirs(STATE_PARENT)  # shared XDG folders: the usual mode, only berdl-init's own is private
    home.makedirs(STATE_DIR, mode=0o700)


@contextlib.contextmanager
def home_lock(home: SafeHome, timeout: float) -> Iterator[bool]:
    """Hold the home's lock, waiting at most `timeout` seconds for another run to release it.

    Yields True while the lock is held. Yields False, without a lock, when the state folder cannot be
    used (a symlink on the way to it, a lock that is not a regular file, a folder the user cannot write,
    a file system without flock, as some NFS mounts are): the run goes on without lock and ledger rather
    than keep the user from their notebook.
    The lock file stays in place between runs (an flock, not a lock file's existence), so taking it
    changes nothing on disk once it exists.
    """
    try:
        make_state_dir(home)
        fd = home.open_lock_file(LOCK)
    except (UnsafePathError, PermissionError):
        yield False
        return
    except OSError as error:
        raise HomeError(f"cannot open the lock ~/{LOCK}: {error}") from error
    try:
        yield _wait_for_lock(fd, timeout, home)
    finally:
        os.close(fd)


def _wait_for_lock(fd: int, timeout: float, home: SafeHome) -> bool:
    """Take the flock on `fd`; False when the file system has none (ENOLCK, as on some NFS mounts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise HomeError(
                    f"another berdl-init has held the lock on {home.root} for {timeout:g} s; giving up"
                ) from None
            time.sleep(0.05)
        except OSError:
            return False
