"""Run berdl-init, counting every file-changing operation, and SIGKILL it at the Nth one.

Usage: python killer.py BERDL-INIT-ARGS...   with, in the environment,
  KILLER_AT=N      kill the process just before its Nth file-changing operation (0: never)
  KILLER_TRACE=F   append one line per operation to F: "N<TAB>operation<TAB>path"
  KILLER_MUTANT=write-in-place   replace berdl-init's atomic write with one that is not (to show that
                   the harness notices)

The wrappers sit on the `os` functions and on `open`, which every path of the program uses, the
virtualenv build included (it runs in-process): os.open for writing, os.write, mkdir, rename, unlink,
rmdir, chmod, chown, symlink, link, truncate, utime, sendfile, and open() in a writing mode.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
import runpy
import shutil  # noqa: F401 - imported before the wrapping, like the program's other modules
import signal
import sys

_KILL_AT = int(os.environ.pop("KILLER_AT", "0") or 0)
_TRACE = os.environ.pop("KILLER_TRACE", "")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_real_write = os.write
_real_readlink = os.readlink
_trace_fd = os.open(_TRACE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644) if _TRACE else -1
_count = 0


def _where(path: object, dir_fd: object) -> str:
    if isinstance(path, int):
        target = path
        path = ""
    else:
        target = dir_fd if isinstance(dir_fd, int) else None
    text = os.fsdecode(path) if path != "" else ""
    if target is not None:
        try:
            base = _real_readlink(f"/proc/self/fd/{target}")
        except OSError:
            base = f"fd{target}"
        text = f"{base}/{text}" if text else base
    return text


def _hit(operation: str, path: object, dir_fd: object = None) -> None:
    global _count
    _count += 1
    if _trace_fd >= 0:
        _real_write(_trace_fd, f"{_count}\t{operation}\t{_where(path, dir_fd)}\n".encode(errors="replace"))
    if _count == _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)


def _wrap(name: str, *, always: bool = True) -> None:
    real = getattr(os, name)

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        first = args[0] if args else kwargs.get("path", kwargs.get("src", kwargs.get("fd", "")))
        if name in ("symlink", "link"):  # what is created is the second argument
            first = args[1] if len(args) > 1 else kwargs.get("dst", "")
        if name == "open":
            flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
            if flags & _WRITE_FLAGS:
                _hit(name, first, kwargs.get("dir_fd"))
        elif name == "write" and first == _trace_fd:
            pass
        else:
            _hit(name, first, kwargs.get("dir_fd", kwargs.get("src_dir_fd", kwargs.get("dst_dir_fd"))))
        return real(*args, **kwargs)

    setattr(os, name, wrapper)
    # shutil.rmtree and others test these sets before using dir_fd= or fd arguments.
    for capability in (
        os.supports_dir_fd,
        os.supports_fd,
        os.supports_follow_symlinks,
        os.supports_effective_ids,
    ):
        if real in capability:
            capability.add(wrapper)


for _name in (
    "open",
    "write",
    "mkdir",
    "rename",
    "replace",
    "unlink",
    "remove",
    "rmdir",
    "chmod",
    "fchmod",
    "lchmod",
    "chown",
    "fchown",
    "lchown",
    "symlink",
    "link",
    "truncate",
    "ftruncate",
    "utime",
    "sendfile",
    "copy_file_range",
):
    if hasattr(os, _name):
        _wrap(_name)

_real_open = io.open


@functools.wraps(_real_open)
def _open(file, mode="r", *args, **kwargs):
    if any(flag in mode for flag in "wax+"):
        _hit("open", file)
    return _real_open(file, mode, *args, **kwargs)


io.open = builtins.open = _open


def _write_in_place(self, rel: str, data: bytes, mode: int = 0o644) -> None:
    """A SafeHome.write that is not atomic (in two halves, in place): the harness must notice it."""
    parent = os.path.dirname(rel)
    if parent:
        self.makedirs(parent)
    fd = os.open(self.absolute(rel), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data[: len(data) // 2])
        os.write(fd, data[len(data) // 2 :])
    finally:
        os.close(fd)


if os.environ.pop("KILLER_MUTANT", "") == "write-in-place":
    from berdl_init.safefs import SafeHome

    SafeHome.write = _write_in_place

if __name__ == "__main__":
    sys.argv = ["berdl-init", *sys.argv[1:]]
    try:
        runpy.run_module("berdl_init", run_name="__main__", alter_sys=True)
    finally:
        if _trace_fd >= 0:
            _real_write(_trace_fd, f"total\t{_count}\n".encode())
