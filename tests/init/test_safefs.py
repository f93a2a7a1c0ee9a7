"""safefs: nothing is read through, written through or created through a symlink; writes are atomic."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from berdl_init.errors import UnsafePathError
from berdl_init.safefs import SafeHome, split
from tests.init.steps.test_venv_upgrade import pyenv


@pytest.fixture
def home(fs) -> SafeHome:
    fs.create_dir("/home/alice")
    fs.create_file("/outside/secret", contents="outside")
    fs.create_dir("/outside/dir")
    with SafeHome.open(Path("/home/alice")) as opened:
        yield opened


@pytest.mark.parametrize("rel", ["/etc/passwd", "../bob", "a/../../b", "", "."])
def test_paths_that_could_leave_the_home_are_refused(rel: str) -> None:
    with pytest.raises(ValueError, match="not a path inside the home"):
        split(rel)


def test_write_replaces_atomically_and_leaves_no_temporary_file(home: SafeHome) -> None:
    home.write("a/b/file", b"one")
    home.write("a/b/file", b"two", mode=0o600)

    assert Path("/home/alice/a/b/file").read_bytes() == b"two"
    assert stat.S_IMODE(os.stat("/home/alice/a/b/file").st_mode) == 0o600
    assert os.listdir("/home/alice/a/b") == ["file"]


def test_write_replaces_a_symlink_instead_of_writing_through_it(home: SafeHome) -> None:
    os.symlink("/outside/secret", "/home/alice/.bashrc")

    home.write(".bashrc", b"new")

    assert Path("/outside/secret").read_text() == "outside"
    assert not os.path.islink("/home/alice/.bashrc")
    assert Path("/home/alice/.bashrc").read_bytes() == b"new"


def test_write_below_a_symlinked_folder_is_refused(home: SafeHome) -> None:
    os.symlink("/outside/dir", "/home/alice/.jupyter")

    with pytest.raises(UnsafePathError, match=r"~/.jupyter is a symlink or not a folder"):
        home.write(".jupyter/lab/settings", b"x")

    assert os.listdir("/outside/dir") == []


def test_makedirs_below_a_symlinked_folder_is_refused(home: SafeHome) -> None:
    os.makedirs("/home/alice/.local")
    os.symlink("/outside/dir", "/home/alice/.local/state")

    with pytest.raises(UnsafePathError, match=r"~/.local/state is a symlink"):
        home.makedirs(".local/state/berdl-init")

    assert os.listdir("/outside/dir") == []


def test_makedirs_sets_the_mode_of_the_folders_it_creates_only(home: SafeHome) -> None:
    os.makedirs("/home/alice/.jupyter", mode=0o750)
    os.chmod("/home/alice/.jupyter", 0o750)

    home.makedirs(".jupyter/runtime", mode=0o700)

    assert stat.S_IMODE(os.stat("/home/alice/.jupyter").st_mode) == 0o750
    assert stat.S_IMODE(os.stat("/home/alice/.jupyter/runtime").st_mode) == 0o700


def test_read_refuses_a_symlink_and_a_folder(home: SafeHome) -> None:
    os.symlink("/outside/secret", "/home/alice/link")
    os.mkdir("/home/alice/folder")

    with pytest.raises(UnsafePathError, match="is a symlink"):
        home.read("link")
    with pytest.raises(UnsafePathError, match="is not a regular file"):
        home.read("folder")
    assert home.read("absent") is None
    assert home.read("no/such/folder/file") is None


def test_read_refuses_a_file_over_the_limit(home: SafeHome) -> None:
    Path("/home/alice/big").write_bytes(b"x" * 100)

    with pytest.raises(UnsafePathError, match="100 bytes, more than the 10 allowed"):
        home.read("big", limit=10)


def test_lstat_does_not_follow_the_last_symlink_and_refuses_one_on_the_way(home: SafeHome) -> None:
    os.symlink("/outside/dir", "/home/alice/link")

    assert stat.S_ISLNK(home.lstat("link").st_mode)
    with pytest.raises(UnsafePathError):
        home.lstat("link/anything")
    assert home.lstat("absent") is None


def test_chmod_refuses_a_symlink(home: SafeHome) -> None:
    os.symlink("/outside/secret", "/home/alice/link")
    os.chmod("/outside/secret", 0o600)

    with pytest.raises(UnsafePathError):
        home.chmod("link", 0o777)

    assert stat.S_IMODE(os.stat("/outside/secret").st_mode) == 0o600


def test_rename_and_remove_tree_on_a_real_disk(tmp_path: Path) -> None:
    """On a real disk: pyfakefs has no shutil.rmtree(dir_fd=...)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/keep").write_text("keep")
    root = tmp_path / "home"
    root.mkdir()
    with SafeHome.open(root) as home:
        home.write("venv.tmp/bin/python", b"#!")
        os.symlink(tmp_path / "outside", root / "venv.tmp/link")
        home.rename("venv.tmp", "envs/venv")
        home.remove_tree("envs/venv")
        home.remove_tree("never/there")

    assert os.listdir(root) == ["envs"]
    assert os.listdir(root / "envs") == []
    assert (tmp_path / "outside/keep").read_text() == "keep"


def test_remove_tree_on_the_oldest_python_berdl_init_supports(tmp_path: Path) -> None:
    """Python 3.10's shutil.rmtree has no dir_fd: the same removal, with the same symlink left alone."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/keep").write_text("keep")
    (tmp_path / "home/envs/venv/bin").mkdir(parents=True)
    os.symlink(tmp_path / "outside", tmp_path / "home/envs/venv/link")
    script = (
        "import sys; from pathlib import Path; from berdl_init.safefs import SafeHome\n"
        "with SafeHome.open(Path(sys.argv[1])) as home:\n"
        "    home.remove_tree('envs/venv')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [pyenv("3.10"), "-c", script, str(tmp_path / "home")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert os.listdir(tmp_path / "home/envs") == []
    assert (tmp_path / "outside/keep").read_text() == "keep"


def test_an_absent_home_reads_as_empty() -> None:
    home = SafeHome(Path("/nowhere"), None)

    assert home.lstat(".bashrc") is None
    assert home.read(".bashrc") is None


def test_read_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    """On a real disk: opening a FIFO for reading would block until a writer comes."""
    os.mkfifo(tmp_path / "fifo")
    with SafeHome.open(tmp_path) as home, pytest.raises(UnsafePathError, match="not a regular file"):
        home.read("fifo")


def test_opening_a_home_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    with pytest.raises(UnsafePathError, match="is a symlink or not a folder"):
        SafeHome.open(tmp_path / "link")


def test_unlink_removes_a_file_and_a_symlink_itself_and_nothing_through_a_symlinked_folder(
    home: SafeHome,
) -> None:
    home.write("venv/marker", b"x")
    os.symlink("/outside/secret", "/home/alice/venv/link")
    os.symlink("/outside/dir", "/home/alice/aside")
    Path("/outside/dir/marker").write_text("outside")

    home.unlink("venv/marker")
    home.unlink("venv/link")
    home.unlink("venv/absent")
    with pytest.raises(UnsafePathError):
        home.unlink("aside/marker")

    assert os.listdir("/home/alice/venv") == []
    assert Path("/outside/secret").read_text() == "outside"
    assert Path("/outside/dir/marker").read_text() == "outside"


def test_listdir_lists_a_folder_and_refuses_a_symlinked_one(home: SafeHome) -> None:
    home.write("envs/a", b"")
    home.makedirs("envs/b")
    os.symlink("/outside/dir", "/home/alice/linked")

    assert sorted(home.listdir("envs")) == ["a", "b"]
    assert home.listdir("missing") == []
    assert "envs" in home.listdir(".")
    with pytest.raises(UnsafePathError):
        home.listdir("linked")


def test_real_path_says_what_realpath_says(tmp_path: Path) -> None:
    """The venv's python, looked at only where it is: the same answer as os.path.realpath, for a copy, a
    link to an absolute interpreter, a chain of relative links as `python -m venv` makes, a link out of
    its folder, a loop, a missing file, and a home whose parent is reached through a symlink."""
    real_home = tmp_path / "real/home"
    bin_dir = real_home / "venv/bin"
    bin_dir.mkdir(parents=True)
    interpreter = tmp_path / "usr/bin/python3.11"
    interpreter.parent.mkdir(parents=True)
    interpreter.write_text("")
    (bin_dir / "copy").write_text("")
    (bin_dir / "absolute").symlink_to(interpreter)
    (bin_dir / "python3.11").symlink_to(interpreter)
    (bin_dir / "python3").symlink_to("python3.11")
    (bin_dir / "python").symlink_to("python3")
    (bin_dir / "outward").symlink_to("../../elsewhere/python")
    (bin_dir / "loop-a").symlink_to("loop-b")
    (bin_dir / "loop-b").symlink_to("loop-a")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for root in (real_home, tmp_path / "link/home"):
        with SafeHome.open(root) as home:
            for name in ("copy", "absolute", "python", "outward", "loop-a", "missing"):
                rel = f"venv/bin/{name}"
                assert home.real_path(rel) == os.path.realpath(root / rel), (root, name)
            assert home.real_path("gone/bin/python") == os.path.realpath(root / "gone/bin/python")
