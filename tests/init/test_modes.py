"""Modes are checked for what they must not allow, never for equality (issue 9, part 1).

jupyter_client adds the sticky bit to the runtime folder, a shared volume may add setgid, a user may chmod
a dotfile: berdl-init leaves those bits alone, so that it and those programs do not undo each other.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.init.homes import FAVORITES_FILE, HOME, berdl_init, fake_home

RUNTIME = HOME / ".jupyter/runtime"


@pytest.fixture
def home(fs, clean_env):
    return fake_home(fs, clean_env)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("extra", [stat.S_ISVTX, stat.S_ISGID, stat.S_ISVTX | stat.S_ISGID])
def test_bits_other_programs_add_to_the_runtime_folder_are_left_alone(home: Path, extra: int) -> None:
    assert berdl_init().exit_code == 0
    RUNTIME.chmod(0o700 | extra)

    assert berdl_init("--check").exit_code == 0
    result = berdl_init("--json")

    assert result.report["changes"] == []
    assert mode_of(RUNTIME) == 0o700 | extra


@pytest.mark.parametrize(("found", "fixed"), [(0o755, 0o700), (0o1777, 0o1700), (0o2770, 0o2700)])
def test_what_group_and_others_may_do_in_the_runtime_folder_is_taken_away(
    home: Path, found: int, fixed: int
) -> None:
    RUNTIME.mkdir(parents=True)
    RUNTIME.chmod(found)

    assert berdl_init("--check").exit_code == 1
    result = berdl_init("--json")

    chmods = [(c["path"], c["detail"]) for c in result.report["changes"] if c["action"] == "chmod"]
    assert chmods == [(".jupyter/runtime", f"mode {found:o} -> {fixed:o}")]
    assert mode_of(RUNTIME) == fixed
    assert berdl_init("--check").exit_code == 0


def test_the_other_jupyter_folders_keep_the_users_mode(home: Path) -> None:
    (HOME / ".jupyter/data").mkdir(parents=True)
    (HOME / ".jupyter").chmod(0o2750)
    (HOME / ".jupyter/data").chmod(0o700)

    assert berdl_init().exit_code == 0

    assert mode_of(HOME / ".jupyter") == 0o2750
    assert mode_of(HOME / ".jupyter/data") == 0o700


def test_an_updated_dotfile_keeps_the_mode_the_user_gave_it(home: Path, fs, clean_env) -> None:
    templates = Path("/srv/templates")
    fs.create_file(templates / "bashrc.j2", contents="# v1\n")
    clean_env.setenv("BERDL_TEMPLATES_DIR", str(templates))
    assert berdl_init().exit_code == 0
    (HOME / ".bashrc").chmod(0o600)
    assert berdl_init("--check").exit_code == 0

    (templates / "bashrc.j2").write_text("# v2\n")
    assert berdl_init().exit_code == 0

    assert (HOME / ".bashrc").read_text() == "# v2\n"
    assert mode_of(HOME / ".bashrc") == 0o600


def test_an_updated_favorites_file_keeps_its_mode(home: Path, clean_env) -> None:
    assert berdl_init().exit_code == 0
    FAVORITES_FILE.chmod(0o600)
    (HOME / "projects").mkdir()
    clean_env.setenv("BERDL_FAVORITES", f'[{{"path": "{HOME}/projects", "name": "projects"}}]')

    result = berdl_init("--json")

    assert [c["path"] for c in result.report["changes"]] == [str(FAVORITES_FILE.relative_to(HOME))]
    assert mode_of(FAVORITES_FILE) == 0o600
