"""Every read and change berdl-init makes in the home goes through here.

Paths are relative to the home and are resolved one component at a time from an open descriptor of the
home, with O_NOFOLLOW: no symlink, planted before the run or during it, can lead a write, mkdir, chmod or
rename out of the home. Files are replaced by writing a temporary file in the same folder and renaming it
over the target, so a reader sees the old bytes or the new ones, never a mix, and a symlink or a hardlink
at the target is replaced rather than written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
from pathlib import Path, PurePosixPath

from berdl_init.errors import UnsafePathError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

#: Files berdl-init reads (dotfiles, settings, the ledger) are small; a bigger one is not ours to parse.
MAX_READ_BYTES = 4 * 1024 * 1024
#: Symlinks followed in one folder before realpath is left to say what a loop resolves to (as Linux's 40).
MAX_LINK_HOPS = 40

TEMP_SUFFIX = ".berdl-tmp"


def split(rel: str) -> tuple[str, ...]:
    """The components of a path relative to the home; refuses anything that could leave it."""
    path = PurePosixPath(rel)
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise ValueError(f"not a path inside the home: {rel!r}")
    return path.parts


def temp_name(name: str) -> str:
    """The temporary name beside `name` that a write or a build uses before its rename.

    It is fixed rather than random: runs on one home are serialised by the lock, and a name that a killed
    run left behind is reused and cleaned by the next one instead of piling up.
    """
    return f".{name}{TEMP_SUFFIX}"


class SafeHome:
    """The home folder, opened once; `fd` is None for a home that does not exist yet (a dry run)."""

    def __init__(self, root: Path, fd: int | None) -> None:
        self.root = root
        self.fd = fd
        #: Folders below the home opened so far, by their components: each is walked once per run.
        self._folders: dict[tuple[str, ...], int] = {}

    @classmethod
    def open(cls, root: Path) -> SafeHome:
        """Open an existing home; raises UnsafePathError when it is a symlink or not a folder."""
        try:
            fd = os.open(root, _DIR_FLAGS)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePathError(f"{root} is a symlink or not a folder") from error
            raise
        return cls(root, fd)

    def close(self) -> None:
        self._forget_folders()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _forget_folders(self) -> None:
        """Close the cached folders; a rename or a removal may have moved any of them."""
        for fd in self._folders.values():
            os.close(fd)
        self._folders.clear()

    def __enter__(self) -> SafeHome:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def absolute(self, rel: str) -> Path:
        return self.root.joinpath(*split(rel))

    # -- reading ---------------------------------------------------------------------------------

    def real_path(self, rel: str) -> str:
        """`os.path.realpath` of `rel`, looking only at `rel` itself: the folders on the way are the real
        folders this home opened (never symlinks), so a symlink at `rel` is read where it is, a chain of
        them within its folder followed, and a target elsewhere resolved by realpath. Called on every run
        (the venv's python): realpath of the whole path would look at each folder from the home down."""
        parts = split(rel)
        dir_fd, name = self._locate(rel, create=False)
        if dir_fd is None:
            return os.path.realpath(self.absolute(rel))
        folder = os.path.join(os.path.realpath(self.root), *parts[:-1])
        for _ in range(MAX_LINK_HOPS):
            try:
                target = os.readlink(name, dir_fd=dir_fd)
            except OSError as error:
                if error.errno in (errno.EINVAL, errno.ENOENT):  # not a symlink, or nothing there
                    return os.path.join(folder, name)
                raise
            if "/" in target or target in (".", ".."):
                return os.path.realpath(os.path.join(folder, target))
            name = target
        return os.path.realpath(os.path.join(folder, name))  # a loop: realpath says what it says of one

    def lstat(self, rel: str) -> os.stat_result | None:
        """The stat of `rel` itself (a symlink is not followed), or None when it does not exist."""
        dir_fd, name = self._locate(rel, create=False)
        if dir_fd is None:
            return None
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read(self, rel: str, limit: int = MAX_READ_BYTES) -> bytes | None:
        """The bytes of the regular file `rel`, or None when it does not exist.

        Raises UnsafePathError for a symlink, a folder, a FIFO or a device (none is opened: a FIFO would
        block and a device may act on open), and for a file over `limit` bytes.
        """
        found = self.read_with_stat(rel, limit)
        return None if found is None else found[0]

    def read_with_stat(self, rel: str, limit: int = MAX_READ_BYTES) -> tuple[bytes, os.stat_result] | None:
        """`read`, with the stat of the file that was read (of its open descriptor)."""
        dir_fd, name = self._locate(rel, create=False)
        if dir_fd is None:
            return None
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        _require_regular(rel, st)
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            _require_regular(rel, st)
            if st.st_size > limit:
                raise UnsafePathError(f"~/{rel} is {st.st_size} bytes, more than the {limit} allowed")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks), st
        finally:
            os.close(fd)

    def listdir(self, rel: str) -> list[str]:
        """The names in the folder `rel` ("." for the home itself); empty when it does not exist."""
        try:
            fd = self.fd if rel == "." else self._walk(split(rel), create=False, mode=0o755)
        except FileNotFoundError:
            return []
        if fd is None:
            return []
        return os.listdir(fd)

    # -- changing --------------------------------------------------------------------------------

    def makedirs(self, rel: str, mode: int = 0o755) -> None:
        """Create `rel` and the folders on the way to it; those that exist must be real folders.

        Only folders created here get `mode` (set explicitly, so the umask does not change it).
        """
        self._walk(split(rel), create=True, mode=mode)

    def write(self, rel: str, data: bytes, mode: int = 0o644) -> None:
        """Replace the file `rel` with `data` atomically: temporary file, flush, fsync, rename."""
        dir_fd, name = self._locate(rel, create=True)
        assert dir_fd is not None
        temp = temp_name(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
        fd = os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.close(fd)
        try:
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)

    def symlink(self, rel: str, target: str) -> None:
        """Create the symlink `rel` pointing at `target` (which is not looked at)."""
        dir_fd, name = self._locate(rel, create=True)
        os.symlink(target, name, dir_fd=dir_fd)

    def copy_in(self, source: Path, rel: str) -> None:
        """Copy the folder `source`, which is outside the home and private to this run, to `rel`.

        Every entry goes through the same descriptor walk as any other write: a folder of the home swapped
        for a symlink while the copy runs cannot send it elsewhere. Symlinks are copied as symlinks; files
        are synced, so that the rename publishing the copy never publishes empty files after a crash.
        """
        self.makedirs(rel, mode=stat.S_IMODE(os.lstat(source).st_mode))
        with os.scandir(source) as entries:
            for entry in sorted(entries, key=lambda entry: entry.name):
                path = f"{rel}/{entry.name}"
                if entry.is_symlink():
                    self.symlink(path, os.readlink(entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    self.copy_in(Path(entry.path), path)
                elif entry.is_file(follow_symlinks=False):
                    mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                    self.write(path, Path(entry.path).read_bytes(), mode)

    def chmod(self, rel: str, mode: int) -> None:
        """Set the mode of the file or folder `rel` itself, never of what a symlink points at."""
        dir_fd, name = self._locate(rel, create=False)
        if dir_fd is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", rel)
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise UnsafePathError(f"~/{rel} is not a regular file or folder")
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        """Rename `src` to `dst`; both are looked up without following symlinks on the way."""
        src_fd, src_name = self._locate(src, create=False)
        if src_fd is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", src)
        dst_fd, dst_name = self._locate(dst, create=True)
        os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        self._forget_folders()

    def unlink(self, rel: str) -> None:
        """Remove the file (or symlink) `rel` itself, if it exists."""
        dir_fd, name = self._locate(rel, create=False)
        if dir_fd is None:
            return
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        os.fsync(dir_fd)

    def remove_tree(self, rel: str) -> None:
        """Remove the folder `rel` and everything in it, if it exists (symlinks inside are not followed)."""
        dir_fd, name = self._locate(rel, create=False)
        if dir_fd is None:
            return
        try:
            if sys.version_info >= (3, 11):
                shutil.rmtree(name, dir_fd=dir_fd)
            else:
                # Python 3.10's rmtree has no dir_fd; the folder's descriptor, named through /proc, is the
                # very folder it was opened as (a rename or a symlink planted since cannot redirect it).
                shutil.rmtree(f"/proc/self/fd/{dir_fd}/{name}")
        except FileNotFoundError:
            pass
        finally:
            self._forget_folders()

    def open_lock_file(self, rel: str) -> int:
        """Open (creating if needed, never truncating) the regular file `rel` for an flock."""
        dir_fd, name = self._locate(rel, create=True)
        assert dir_fd is not None
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafePathError(f"~/{rel} is a symlink") from error
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafePathError(f"~/{rel} is not a regular file")
        return fd

    # -- walking ---------------------------------------------------------------------------------

    def _locate(self, rel: str, *, create: bool) -> tuple[int | None, str]:
        """An open descriptor of the folder holding `rel` (None when it does not exist and `create` is
        false), and the last component of `rel`. The descriptor belongs to the cache: never close it."""
        parts = split(rel)
        try:
            return self._walk(parts[:-1], create=create, mode=0o755), parts[-1]
        except FileNotFoundError:
            if create:
                raise
            return None, parts[-1]

    def _walk(self, parts: tuple[str, ...], *, create: bool, mode: int) -> int:
        """Open the folder `parts` below the home, component by component, never following a symlink.

        Folders that do not exist are created when `create` is true, with `mode` set explicitly (so the
        umask does not change it); folders that exist keep theirs.
        """
        if self.fd is None:
            raise FileNotFoundError(errno.ENOENT, "the home does not exist", str(self.root))
        fd = self.fd
        for depth, part in enumerate(parts):
            key = parts[: depth + 1]
            cached = self._folders.get(key)
            if cached is not None:
                fd = cached
                continue
            fd = self._open_folder(fd, part, key, create=create, mode=mode)
            self._folders[key] = fd
        return fd

    @staticmethod
    def _open_folder(parent: int, part: str, key: tuple[str, ...], *, create: bool, mode: int) -> int:
        try:
            try:
                return os.open(part, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
            created = True
            try:
                os.mkdir(part, mode, dir_fd=parent)
            except FileExistsError:  # made by someone else meanwhile: theirs, mode included
                created = False
            fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
            if created:
                try:
                    os.fchmod(fd, mode)
                except BaseException:
                    os.close(fd)
                    raise
            return fd
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePathError(f"~/{'/'.join(key)} is a symlink or not a folder") from error
            raise


def _require_regular(rel: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"~/{rel} is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"~/{rel} is not a regular file")
