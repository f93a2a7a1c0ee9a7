"""Snapshots of a folder (a home, a venv), on the real disk or on pyfakefs, to show that a run changed
nothing, or lost nothing."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    kind: str  # "dir", "file", "link"
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int  # 0 unless asked for
    content: str  # sha256 of a file, target of a link, "" for a folder


def snapshot(root: Path, *, ctime: bool = False) -> dict[str, Entry]:
    """Every path under `root` (the root itself as "."), without following symlinks.

    `ctime`: also each inode's change time, which a chmod or chown changes even to the same value. Left
    out by default: pyfakefs changes it when a file is opened (the `fs` fixture's chmod, tests/conftest.py).
    """
    entries = {".": _entry(root, ctime)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            entries[path.relative_to(root).as_posix()] = _entry(path, ctime)
    return entries


def _entry(path: Path, ctime: bool) -> Entry:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        kind, content = "link", os.readlink(path)
    elif stat.S_ISDIR(st.st_mode):
        kind, content = "dir", ""
    else:
        kind, content = "file", hashlib.sha256(path.read_bytes()).hexdigest()
    mode, changed = stat.S_IMODE(st.st_mode), st.st_ctime_ns if ctime else 0
    return Entry(kind, mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, changed, content)


def differences(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    """What differs, one line per path: gone, new, or changed."""
    lines = [f"gone: {p}" for p in sorted(before.keys() - after.keys())]
    lines += [f"new: {p}" for p in sorted(after.keys() - before.keys())]
    lines += [
        f"changed: {p}: {before[p]} -> {after[p]}"
        for p in sorted(before.keys() & after.keys())
        if before[p] != after[p]
    ]
    return lines


def lost(before: dict[str, Entry], after: dict[str, Entry], *, merged: set[str]) -> list[str]:
    """What of `before` is not in `after` as it was. Folders may gain entries (their mtime changes);
    files and links must be byte for byte, mode, owner and mtime the same, except the `merged` ones."""
    problems = []
    for path, old in sorted(before.items()):
        new = after.get(path)
        if new is None:
            problems.append(f"gone: {path}")
        elif old.kind == "dir":
            if (new.kind, new.mode, new.uid, new.gid) != (old.kind, old.mode, old.uid, old.gid):
                problems.append(f"folder changed: {path}: {old} -> {new}")
        elif path not in merged and new != old:
            problems.append(f"changed: {path}: {old} -> {new}")
    return problems
