"""Started as root, berdl-init fixes only the home folder itself and does everything else as the user.

Real disk, real setuid: the homes live in a folder under /var/tmp that every user can traverse (pytest's
tmp_path is private to root). berdl-init runs with an interpreter that uid 1000 can read too, since after
dropping privileges it still imports modules (jinja2, virtualenv) and runs the venv's base interpreter.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rootrun import GID, UID, find_user_python, pythonpath, run_as_user, skip_or_fail, traversable_base

pytestmark = pytest.mark.slow

USER = "alice"
TIMEOUT = 300


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        skip_or_fail("these tests start berdl-init as root (os.geteuid() != 0 here)")


@pytest.fixture(scope="module")
def user_python() -> Path:
    return find_user_python()


@pytest.fixture
def base() -> Iterator[Path]:
    with traversable_base("berdl-init-root-") as path:
        yield path


def berdl(
    python: Path, home: Path, *args: str, status: int = 0, **settings: str
) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """Run berdl-init as root with --json; check its exit status; return its JSON output and the run."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BERDL_", "VIRTUALENV_", "PIP_", "PYTHON"))
        and key not in {"VIRTUAL_ENV", "JUPYTERHUB_USER", "NB_USER"}
    }
    env.update(
        PYTHONPATH=pythonpath(),
        HOME=str(home),
        TMPDIR=str(home.parent / "tmp"),
        BERDL_USER=USER,
        **settings,
    )
    result = subprocess.run(
        [str(python), "-m", "berdl_init", "--home", str(home), "--json", *args],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == status, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout), result


def as_user() -> dict[str, str]:
    return {"BERDL_UID": str(UID), "BERDL_GID": str(GID)}


def owners(root: Path) -> dict[str, tuple[int, int]]:
    """(uid, gid) of root and of everything under it, symlinks not followed."""
    result = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        result[path.relative_to(root).as_posix()] = (st.st_uid, st.st_gid)
    return result


def listing(root: Path) -> dict[str, tuple[int, int, int, int, int]]:
    """(uid, gid, mode, size, mtime_ns) of root and of everything under it, symlinks not followed."""
    result = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        key = path.relative_to(root).as_posix()
        result[key] = (st.st_uid, st.st_gid, st.st_mode, st.st_size, st.st_mtime_ns)
    return result


def step_status(report: dict, name: str) -> str:
    return next(step["status"] for step in report["steps"] if step["name"] == name)


def test_a_missing_home_is_created_for_the_user(user_python: Path, base: Path) -> None:
    home = base / USER
    report, _ = berdl(user_python, home, "--skip", "venv", **as_user())
    assert report["ok"] is True
    assert report["changes"][0] == {"step": "home", "action": "mkdir", "path": ".", "detail": "the home"}
    assert (home / ".bashrc").is_file()
    assert set(owners(home).values()) == {(UID, GID)}
    assert stat.S_IMODE((home / ".jupyter" / "runtime").stat().st_mode) == 0o700

    again, _ = berdl(user_python, home, "--skip", "venv", **as_user())
    assert again["changes"] == []


def test_a_root_owned_home_is_given_to_the_user_and_its_contents_are_not(
    user_python: Path, base: Path
) -> None:
    home = base / USER
    home.mkdir()
    home.chmod(0o755)
    (home / "keep.txt").write_bytes(b"root's\n")
    (home / "keep.txt").chmod(0o644)
    (home / "rootdir").mkdir()
    (home / "rootdir" / "inside.txt").write_bytes(b"root's too\n")
    before = {name: (home / name).lstat() for name in ("keep.txt", "rootdir", "rootdir/inside.txt")}

    report, _ = berdl(user_python, home, "--skip", "venv", **as_user())
    assert report["ok"] is True
    chown = report["changes"][0]
    assert (chown["step"], chown["action"], chown["path"]) == ("home", "chown", ".")
    assert "0:0 -> 1000:1000" in chown["detail"]

    st = home.lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o755)
    found = owners(home)
    for name, old in before.items():
        now = (home / name).lstat()
        assert (now.st_uid, now.st_gid, now.st_mode, now.st_mtime_ns) == (
            old.st_uid,
            old.st_gid,
            old.st_mode,
            old.st_mtime_ns,
        )
        assert found.pop(name) == (0, 0)
    assert (home / "keep.txt").read_bytes() == b"root's\n"
    assert set(found.values()) == {(UID, GID)}  # the home and all berdl-init created
    assert stat.S_IMODE((home / ".jupyter" / "runtime").stat().st_mode) == 0o700


def test_a_home_owned_by_the_user_needs_no_ids(user_python: Path, base: Path) -> None:
    home = base / USER
    home.mkdir()
    os.chown(home, UID, GID)
    report, _ = berdl(user_python, home, "--skip", "venv")
    assert report["ok"] is True
    assert [change["step"] for change in report["changes"]].count("home") == 0
    assert set(owners(home).values()) == {(UID, GID)}


def test_the_venv_is_built_by_the_user(user_python: Path, base: Path) -> None:
    home = base / USER
    report, _ = berdl(user_python, home, **as_user())
    assert report["ok"] is True
    venv = home / ".virtualenvs" / "envs" / f"{USER}_default_env"
    assert ("venv", "build-venv") in {(c["step"], c["action"]) for c in report["changes"]}
    assert set(owners(home).values()) == {(UID, GID)}
    assert stat.S_IMODE((home / ".jupyter" / "runtime").stat().st_mode) == 0o700
    assert [p.name for p in home.rglob("*berdl-tmp*")] == []

    prefix = run_as_user([str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"], {})
    assert prefix.stdout.strip() == str(venv)

    before = listing(home)
    again, _ = berdl(user_python, home, **as_user())
    assert again["changes"] == []
    assert listing(home) == before


def test_a_home_that_is_a_symlink_is_refused(user_python: Path, base: Path) -> None:
    target = base / "elsewhere"
    target.mkdir()
    target.chmod(0o755)
    (target / "file.txt").write_bytes(b"not a home\n")
    home = base / USER
    home.symlink_to(target)
    before = listing(target)

    out, run = berdl(user_python, home, "--skip", "venv", status=3, **as_user())
    assert out["ok"] is False
    assert out["exit_status"] == 3
    assert "symlink" in run.stderr
    assert home.is_symlink()
    assert os.readlink(home) == str(target)
    assert listing(target) == before


def test_a_jupyter_symlink_out_of_the_home_is_not_followed(user_python: Path, base: Path) -> None:
    outside = base / "outside"
    outside.mkdir()
    os.chown(outside, UID, GID)  # the user could write here: only berdl-init's refusal protects it
    home = base / USER
    home.mkdir()
    os.chown(home, UID, GID)
    (home / ".jupyter").symlink_to(outside)
    os.lchown(home / ".jupyter", UID, GID)
    before = listing(outside)

    report, _ = berdl(user_python, home, "--skip", "venv", **as_user())
    assert report["ok"] is False
    assert step_status(report, "dirs") == "failed"
    dirs = next(step for step in report["steps"] if step["name"] == "dirs")
    assert ".jupyter" in dirs["message"]
    # The favorites live under ~/.jupyter/lab: left alone, with a warning.
    assert step_status(report, "favorites") == "ok"
    assert any(w.startswith("favorites: ~/.jupyter") and "symlink" in w for w in report["warnings"])
    assert step_status(report, "dotfiles") == "changed"
    assert listing(outside) == before
    assert os.readlink(home / ".jupyter") == str(outside)

    berdl(user_python, home, "--skip", "venv", "--strict", status=3, **as_user())
    assert listing(outside) == before


@pytest.mark.parametrize("state", ["missing", "root-owned"])
def test_root_without_BERDL_UID_is_a_settings_error(user_python: Path, base: Path, state: str) -> None:
    home = base / USER
    if state == "root-owned":
        home.mkdir()
        home.chmod(0o755)
        (home / "file.txt").write_bytes(b"root's\n")
    before = listing(base)

    out, run = berdl(user_python, home, "--skip", "venv", status=2)
    assert out["ok"] is False
    assert "BERDL_UID" in out["error"]
    assert "BERDL_UID" in run.stderr
    assert listing(base) == before


def test_BERDL_UID_without_BERDL_GID_never_takes_root_s_group(user_python: Path, base: Path) -> None:
    """A root-owned home names no group: taking its gid 0 would run everything in group root."""
    home = base / USER
    home.mkdir()
    home.chmod(0o755)
    before = listing(base)

    out, run = berdl(user_python, home, "--skip", "venv", status=2, BERDL_UID=str(UID))
    assert "BERDL_GID" in out["error"]
    assert "BERDL_GID" in run.stderr
    assert listing(base) == before


@pytest.mark.parametrize("state", ["missing", "root-owned"])
def test_a_dry_run_as_root_without_BERDL_UID_shows_the_plan_and_warns(
    user_python: Path, base: Path, state: str
) -> None:
    home = base / USER
    if state == "root-owned":
        home.mkdir()
        home.chmod(0o755)
    before = listing(base)

    out, _ = berdl(user_python, home, "--skip", "venv", "--dry-run")

    assert out["ok"] is True
    paths = [change["path"] for change in out["changes"]]
    assert {".", ".jupyter/runtime", ".bashrc"} <= set(paths)
    home_fix = out["changes"][0]
    if state == "missing":
        assert (home_fix["action"], home_fix["path"]) == ("mkdir", ".")
    else:
        assert (home_fix["action"], home_fix["detail"]) == (
            "chown",
            "0:0 -> BERDL_UID:BERDL_GID (not set), this folder only",
        )
    assert any("owner of what would be created is unknown" in warning for warning in out["warnings"])
    assert listing(base) == before
