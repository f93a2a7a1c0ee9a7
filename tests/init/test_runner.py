"""Whole runs of berdl-init on a fake file system: empty and legacy homes, re-runs, dry runs, --check.

The venv step builds real interpreters and is tested on a real disk (test_venv.py); here it is skipped.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.init.homes import FAVORITES_FILE, LEDGER_FILE, berdl_init, fake_home
from tests.snapshots import snapshot

JUPYTERLAB_FAVORITES = """{
    // Favorites
    // @jlab-enhanced/favorites:favorites
    // The list of favorites.
    // ****************************************
    "favorites": [
        {
            "root": "/",
            "contentType": "directory",
            "iconLabel": "ui-components:folder",
            "path": "home/alice/projects",
            "name": "projects",
        },
        {
            "root": "/",
            "path": "home/alice",
            "name": "Home",
            "contentType": "directory",
            "iconLabel": "ui-components:folder",
            "default": true,
            "hidden": true,
        },
    ],

    // Show Widget
    "showWidget": false,
}"""


@pytest.fixture
def home(fs, clean_env):
    return fake_home(fs, clean_env)


def test_empty_home_gets_everything(home: Path) -> None:
    result = berdl_init("--json")

    assert result.exit_code == 0, result.stderr
    report = result.report
    assert report["ok"] is True
    assert report["home"] == str(home)
    assert set(result.changed_paths) == {
        ".jupyter",
        ".jupyter/data",
        ".jupyter/runtime",
        ".bashrc",
        ".bash_profile",
        FAVORITES_FILE.relative_to(home).as_posix(),
    }
    assert [step["status"] for step in report["steps"]] == ["changed", "changed", "skipped", "changed"]
    assert stat.S_IMODE((home / ".jupyter/runtime").stat().st_mode) == 0o700
    assert "source" not in (home / ".bash_profile").read_text()
    assert ". ~/.bashrc" in (home / ".bash_profile").read_text()
    assert "/home/alice/.virtualenvs/envs/alice_default_env" in (home / ".bashrc").read_text()

    favorites = json.loads(FAVORITES_FILE.read_text())
    assert favorites == {
        "favorites": [
            {
                "root": "/",
                "path": "home/alice",
                "contentType": "directory",
                "iconLabel": "ui-components:folder",
                "name": "Home",
                "default": True,
            }
        ]
    }
    assert not FAVORITES_FILE.read_text().endswith("\n")  # JupyterLab's own layout


def test_second_run_changes_no_byte_and_no_mtime(home: Path) -> None:
    assert berdl_init().exit_code == 0
    before = snapshot(home)

    result = berdl_init("--json")

    assert result.exit_code == 0
    assert result.report["changes"] == []
    assert [step["status"] for step in result.report["steps"]] == ["ok", "ok", "skipped", "ok"]
    assert snapshot(home) == before


def test_dry_run_changes_nothing_and_shows_the_plan(home: Path) -> None:
    (home / "notes.txt").write_text("mine")
    before = snapshot(home)

    dry = berdl_init("--dry-run", "--json")

    assert dry.exit_code == 0
    assert dry.report["dry_run"] is True
    assert snapshot(home) == before
    real = berdl_init("--json")
    assert dry.report["changes"] == real.report["changes"]


def test_dry_run_prints_a_diff(home: Path) -> None:
    result = berdl_init("--dry-run")

    assert result.exit_code == 0
    assert "[dotfiles] write ~/.bashrc (new)" in result.stdout
    assert "+++ b/.bashrc" in result.stdout
    assert "+# ~/.bashrc for alice, written by berdl-init." in result.stdout
    assert not (home / ".bashrc").exists()


def test_check_exits_1_while_changes_are_pending_then_0(home: Path) -> None:
    assert berdl_init("--check").exit_code == 1
    assert not (home / ".jupyter").exists()
    assert berdl_init().exit_code == 0
    assert berdl_init("--check").exit_code == 0


def test_dry_run_of_a_missing_home_creates_nothing(home: Path, fs) -> None:
    fs.remove_object(str(home))

    result = berdl_init("--dry-run", "--json")

    assert result.exit_code == 0
    assert result.changed_paths[0] == "."
    assert not home.exists()


def test_missing_home_is_created(home: Path, fs) -> None:
    fs.remove_object(str(home))

    result = berdl_init("--json")

    assert result.exit_code == 0
    assert (home / ".bashrc").is_file()


def test_legacy_home_keeps_everything_of_the_user(home: Path) -> None:
    """A home the replaced spawner set up: hand-made dotfiles, a venv, a favorites file from JupyterLab."""
    (home / ".bashrc").write_text("# my own bashrc\nexport EDITOR=vim\n")
    (home / ".bash_profile").write_text("source ~/.bashrc\n")
    venv = home / ".virtualenvs/envs/alice_default_env"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.2\n")
    (venv / "lib/site.txt").parent.mkdir(parents=True)
    (venv / "lib/site.txt").write_text("packages")
    (home / "projects").mkdir()
    FAVORITES_FILE.parent.mkdir(parents=True)
    FAVORITES_FILE.write_text(JUPYTERLAB_FAVORITES)
    (home / ".jupyter/runtime").mkdir(mode=0o755)
    venv_before = snapshot(venv)

    result = berdl_init("--json")

    assert result.exit_code == 0
    assert (home / ".bashrc").read_text() == "# my own bashrc\nexport EDITOR=vim\n"
    assert (home / ".bash_profile").read_text() == "source ~/.bashrc\n"
    assert "written by berdl-init" in (home / ".bashrc.berdl-new").read_text()
    assert (home / ".bash_profile.berdl-new").is_file()
    warnings = "\n".join(result.report["warnings"])
    assert "~/.bashrc has changes of yours and is kept" in warnings
    assert "~/.bash_profile has changes of yours and is kept" in warnings
    assert snapshot(venv) == venv_before
    assert stat.S_IMODE((home / ".jupyter/runtime").stat().st_mode) == 0o700
    # The removed default favorite stays removed, and nothing was added: the file is not rewritten.
    assert FAVORITES_FILE.read_text() == JUPYTERLAB_FAVORITES


def test_conflict_is_a_warning_not_a_pending_change(home: Path) -> None:
    (home / ".bashrc").write_text("# mine\n")
    assert berdl_init().exit_code == 0

    result = berdl_init("--json")

    assert result.report["changes"] == []
    assert any(".bashrc has changes of yours" in warning for warning in result.report["warnings"])
    assert berdl_init("--check").exit_code == 0


def test_a_user_edit_after_a_run_is_kept(home: Path) -> None:
    assert berdl_init().exit_code == 0
    edited = (home / ".bashrc").read_text() + "alias k=kubectl\n"
    (home / ".bashrc").write_text(edited)

    result = berdl_init("--json", "--only", "dotfiles")

    assert result.exit_code == 0
    assert (home / ".bashrc").read_text() == edited
    assert result.changed_paths == [".bashrc.berdl-new"]


def test_template_update_replaces_a_file_the_user_left_alone(home: Path, fs, clean_env) -> None:
    templates = Path("/srv/templates")
    fs.create_file(templates / "bashrc.j2", contents="# v1 for {{ user }}\n")
    clean_env.setenv("BERDL_TEMPLATES_DIR", str(templates))
    assert berdl_init().exit_code == 0
    assert (home / ".bashrc").read_text() == "# v1 for alice\n"

    (templates / "bashrc.j2").write_text("# v2 for {{ user }}\n")
    result = berdl_init("--json")

    assert result.exit_code == 0
    assert (home / ".bashrc").read_text() == "# v2 for alice\n"
    assert [change["detail"] for change in result.report["changes"]] == ["updated"]
    assert not (home / ".bashrc.berdl-new").exists()


def test_template_variables_reach_the_render(home: Path, fs, clean_env) -> None:
    templates = Path("/srv/templates")
    fs.create_file(templates / "condarc.j2", contents="channel: {{ channel }}\n")
    clean_env.setenv("BERDL_TEMPLATES_DIR", str(templates))
    clean_env.setenv("BERDL_TEMPLATE_VARS", '{"channel": "conda-forge"}')

    assert berdl_init().exit_code == 0

    assert (home / ".condarc").read_text() == "channel: conda-forge\n"


def test_an_undefined_template_variable_is_a_settings_error_and_changes_nothing(
    home: Path, fs, clean_env
) -> None:
    templates = Path("/srv/templates")
    fs.create_file(templates / "bashrc.j2", contents="ok\n")
    fs.create_file(templates / "zshrc.j2", contents="{{ nope }}\n")
    clean_env.setenv("BERDL_TEMPLATES_DIR", str(templates))
    before = snapshot(home)

    result = berdl_init()

    assert result.exit_code == 2
    assert "template zshrc.j2: 'nope' is undefined" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(home) == before


def test_a_template_error_stops_the_run_before_the_missing_home_is_created(home: Path, fs, clean_env) -> None:
    templates = Path("/srv/templates")
    fs.create_file(templates / "bashrc.j2", contents="{% if %}\n")
    clean_env.setenv("BERDL_TEMPLATES_DIR", str(templates))
    fs.remove_object(str(home))

    result = berdl_init()

    assert result.exit_code == 2
    assert "template bashrc.j2, line 1" in result.stderr
    assert not home.exists()


def test_an_unchanged_template_is_not_rendered_again(home: Path, monkeypatch) -> None:
    assert berdl_init().exit_code == 0
    ledger = json.loads(LEDGER_FILE.read_text())
    assert set(ledger["renders"]) == {"bashrc.j2", "bash_profile.j2"}

    def no_render(*args, **kwargs):
        raise AssertionError("rendered although the template and its variables did not change")

    monkeypatch.setattr("berdl_init.steps.dotfiles.render", no_render)
    result = berdl_init("--json")

    assert result.exit_code == 0
    assert result.report["changes"] == []


def test_a_symlinked_dotfile_is_left_alone(home: Path, fs) -> None:
    fs.create_file("/srv/dotfiles/bashrc", contents="# from my dotfiles repo\n")
    (home / ".bashrc").symlink_to("/srv/dotfiles/bashrc")

    result = berdl_init("--json", "--only", "dotfiles")

    assert result.exit_code == 0
    assert os.readlink(home / ".bashrc") == "/srv/dotfiles/bashrc"
    assert Path("/srv/dotfiles/bashrc").read_text() == "# from my dotfiles repo\n"
    assert (home / ".bashrc.berdl-new").is_file()
    assert any("~/.bashrc is a symlink" in warning for warning in result.report["warnings"])


def test_a_corrupt_ledger_treats_every_dotfile_as_the_users(home: Path) -> None:
    assert berdl_init().exit_code == 0
    LEDGER_FILE.write_text("{not json")
    (home / ".bashrc").write_text("# edited\n")

    result = berdl_init("--json")

    assert result.exit_code == 0
    assert (home / ".bashrc").read_text() == "# edited\n"
    assert any("ledger" in warning for warning in result.report["warnings"])


def test_a_symlinked_jupyter_folder_fails_the_dirs_step_only(home: Path, fs) -> None:
    fs.create_dir("/srv/elsewhere")
    (home / ".jupyter").symlink_to("/srv/elsewhere")

    result = berdl_init("--json")

    assert result.exit_code == 0
    steps = {step["name"]: step for step in result.report["steps"]}
    assert steps["dirs"]["status"] == "failed"
    assert "~/.jupyter is a symlink" in steps["dirs"]["message"]
    assert steps["dotfiles"]["status"] == "changed"
    assert os.listdir("/srv/elsewhere") == []
    assert result.report["ok"] is False
    assert berdl_init("--strict").exit_code == 3


def test_human_output_has_one_line_per_change_and_a_summary(home: Path) -> None:
    result = berdl_init()

    lines = result.stdout.strip().splitlines()
    assert lines[0] == "[dirs] mkdir ~/.jupyter (mode 755)"
    assert len(lines) == 7
    assert lines[-1].startswith("berdl-init 0.1.0: /home/alice: 6 changes made, 0 warnings, all steps ok, ")
    assert lines[-1].endswith(" s")


def test_a_symlinked_state_folder_is_not_followed_and_the_run_goes_on(home: Path, fs) -> None:
    fs.create_dir("/srv/bigdisk/local")
    (home / ".local").symlink_to("/srv/bigdisk/local")

    result = berdl_init("--json")

    assert result.exit_code == 0
    assert (home / ".bashrc").is_file()
    assert os.listdir("/srv/bigdisk/local") == []
    assert any("without the lock and the ledger" in warning for warning in result.report["warnings"])
