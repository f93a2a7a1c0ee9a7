"""The command line: options, settings from the environment and a TOML file, exit statuses, the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from berdl_init import __version__
from berdl_init.settings import PACKAGED_TEMPLATES
from berdl_init.steps import PLANNERS
from tests.init.homes import HOME, berdl_init
from tests.snapshots import snapshot


@pytest.fixture
def home(fs, clean_env):
    fs.add_real_directory(PACKAGED_TEMPLATES)
    fs.create_dir(HOME)
    clean_env.setenv("HOME", "/root-of-the-caller")
    clean_env.setenv("BERDL_HOME", str(HOME))
    clean_env.setenv("BERDL_USER", "alice")
    clean_env.setenv("BERDL_UID", str(os.getuid()))
    clean_env.setenv("BERDL_GID", str(os.getgid()))
    clean_env.setenv("BERDL_STEPS", "dirs,dotfiles,favorites")
    return HOME


def test_version() -> None:
    result = berdl_init("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"berdl-init, version {__version__}"


def test_report_has_the_documented_keys(home: Path) -> None:
    result = berdl_init("--json")

    report = result.report
    assert {"version", "home", "dry_run", "ok", "changes", "steps", "warnings"} <= report.keys()
    assert report["version"] == __version__
    assert report["dry_run"] is False
    assert [step["name"] for step in report["steps"]] == ["dirs", "dotfiles", "venv", "favorites"]
    for step in report["steps"]:
        assert step["status"] in {"ok", "changed", "skipped", "failed"}
        assert isinstance(step["seconds"], float)
        assert isinstance(step["message"], str)
    for change in report["changes"]:
        assert set(change) == {"step", "action", "path", "detail"}
        assert not change["path"].startswith("/")
    # Human lines go to stderr, so stdout is exactly one JSON document.
    assert result.stderr.strip().splitlines()[-1].startswith("berdl-init ")


def test_only_runs_the_named_steps(home: Path) -> None:
    result = berdl_init("--json", "--only", "dirs")

    statuses = {step["name"]: step["status"] for step in result.report["steps"]}
    assert statuses == {"dirs": "changed", "dotfiles": "skipped", "venv": "skipped", "favorites": "skipped"}
    assert (home / ".jupyter/runtime").is_dir()
    assert not (home / ".bashrc").exists()


def test_skip_removes_steps_from_the_setting(home: Path) -> None:
    result = berdl_init("--json", "--skip", "dotfiles", "--skip", "favorites")

    statuses = {step["name"]: step["status"] for step in result.report["steps"]}
    assert statuses == {"dirs": "changed", "dotfiles": "skipped", "venv": "skipped", "favorites": "skipped"}


def test_the_command_line_wins_over_the_environment(home: Path, fs) -> None:
    other = Path("/home/bob")
    fs.create_dir(other)

    result = berdl_init("--json", "--home", str(other))

    assert result.report["home"] == str(other)
    assert (other / ".bashrc").is_file()
    assert not (home / ".bashrc").exists()


def test_settings_from_a_toml_file_and_the_environment_wins(home: Path, fs, clean_env) -> None:
    fs.create_file(
        "/etc/berdl/init.toml",
        contents='user = "carol"\nsteps = ["dotfiles"]\nfavorites_root = "~/work"\n',
    )
    clean_env.delenv("BERDL_STEPS")
    clean_env.setenv("BERDL_USER", "dave")

    result = berdl_init("--json", "--config", "/etc/berdl/init.toml")

    assert result.exit_code == 0, result.stderr
    assert [change["path"] for change in result.report["changes"]] == [".bash_profile", ".bashrc"]
    assert "for dave," in (home / ".bashrc").read_text()


def test_dry_run_and_check_together_is_a_usage_error(home: Path) -> None:
    result = berdl_init("--dry-run", "--check")

    assert result.exit_code == 2
    assert "--dry-run and --check cannot be combined" in result.stderr


def test_unknown_step_is_a_usage_error(home: Path) -> None:
    result = berdl_init("--only", "kernels")

    assert result.exit_code == 2
    assert "kernels" in result.stderr


BAD_SETTINGS = [
    ("BERDL_HOME", "relative/home", "BERDL_HOME='relative/home': is not absolute"),
    ("BERDL_HOME", "", "BERDL_HOME='': is empty"),
    ("BERDL_UID", "alice", "BERDL_UID='alice': Input should be a valid integer"),
    ("BERDL_UID", "-1", "BERDL_UID='-1': Input should be greater than or equal to 0"),
    (
        "BERDL_STEPS",
        "dirs,kernels",
        "BERDL_STEPS[1]='kernels': Input should be 'dirs', 'dotfiles', 'venv' or",
    ),
    ("BERDL_TEMPLATES_DIR", "/nowhere", "BERDL_TEMPLATES_DIR='/nowhere': no such folder"),
    ("BERDL_TEMPLATE_VARS", "{not json", "BERDL_TEMPLATE_VARS: not valid JSON"),
    ("BERDL_TEMPLATE_VARS", '{"user": "mallory"}', "BERDL_TEMPLATE_VARS: redefines user"),
    ("BERDL_VENV_DIR", "/opt/venv", "BERDL_VENV_DIR='/opt/venv': must be a folder inside BERDL_HOME"),
    (
        "BERDL_VENV_SYSTEM_SITE_PACKAGES",
        "maybe",
        "BERDL_VENV_SYSTEM_SITE_PACKAGES='maybe': Input should be a valid boolean",
    ),
    (
        "BERDL_FAVORITES",
        '[{"path": "data"}]',
        "BERDL_FAVORITES[0][path]='data': the favorite's path must be absolute",
    ),
    ("BERDL_FAVORITES", "[{", "BERDL_FAVORITES='[{': Input should be a valid list"),
    (
        "BERDL_FAVORITES",
        '{"path": "/data"}',
        """BERDL_FAVORITES='{"path": "/data"}': Input should be a valid list""",
    ),
    ("BERDL_FAVORITES_ROOT", "work", "BERDL_FAVORITES_ROOT='work': must be an absolute path or ~/FOLDER"),
    ("BERDL_USER", "a/b", "BERDL_USER='a/b': is not a usable user name"),
]


@pytest.mark.parametrize(
    ("name", "value", "message"), BAD_SETTINGS, ids=[f"{n}={v}" for n, v, _ in BAD_SETTINGS]
)
def test_a_bad_setting_exits_2_with_one_line_and_changes_nothing(
    home: Path, clean_env, name, value, message
) -> None:
    clean_env.setenv(name, value)
    before = snapshot(home)

    result = berdl_init()

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("berdl-init: invalid settings: ")
    assert message in lines[0]
    assert result.stdout == ""
    assert snapshot(home) == before


def test_a_missing_venv_interpreter_is_a_settings_error_when_the_venv_step_runs(
    home: Path, clean_env
) -> None:
    clean_env.setenv("BERDL_STEPS", "venv")
    clean_env.setenv("BERDL_VENV_PYTHON", "/opt/conda/bin/python3")

    result = berdl_init()

    assert result.exit_code == 2
    assert "BERDL_VENV_PYTHON='/opt/conda/bin/python3': no such executable file" in result.stderr


def test_a_venv_python_is_refused_as_the_base_interpreter(home: Path, fs, clean_env) -> None:
    fs.create_file("/opt/env/bin/python", st_mode=0o100755)
    fs.create_file("/opt/env/pyvenv.cfg", contents="home = /usr/bin\n")
    clean_env.setenv("BERDL_STEPS", "venv")
    clean_env.setenv("BERDL_VENV_PYTHON", "/opt/env/bin/python")

    result = berdl_init()

    assert result.exit_code == 2
    assert "is a virtualenv's python; a base interpreter is expected" in result.stderr


def test_template_vars_values_are_never_echoed(home: Path, clean_env) -> None:
    clean_env.setenv("BERDL_TEMPLATE_VARS", '{"token": "s3cr3t-value", "user": "x"}')

    result = berdl_init("--json")

    assert result.exit_code == 2
    assert "s3cr3t-value" not in result.stdout + result.stderr


def test_bad_settings_with_json_print_an_error_object(home: Path, clean_env) -> None:
    clean_env.setenv("BERDL_HOME", "relative")

    result = berdl_init("--json")

    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["ok"] is False
    assert error["exit_status"] == 2
    assert "BERDL_HOME='relative'" in error["error"]


def test_a_home_that_is_a_symlink_exits_3(home: Path, fs, clean_env) -> None:
    fs.create_dir("/srv/real-home")
    fs.create_symlink("/home/link", "/srv/real-home")
    clean_env.setenv("BERDL_HOME", "/home/link")

    result = berdl_init()

    assert result.exit_code == 3
    assert "is a symlink" in result.stderr
    assert os.listdir("/srv/real-home") == []


def test_a_home_that_is_a_file_exits_3(home: Path, fs, clean_env) -> None:
    fs.create_file("/home/file")
    clean_env.setenv("BERDL_HOME", "/home/file")

    result = berdl_init()

    assert result.exit_code == 3
    assert "is not a folder" in result.stderr


def test_a_home_that_cannot_be_created_exits_3(home: Path, clean_env) -> None:
    clean_env.setenv("BERDL_HOME", "/no/such/parent/alice")

    result = berdl_init("--skip", "dotfiles")

    assert result.exit_code == 3
    assert "is missing and cannot be created" in result.stderr


def test_strict_turns_a_failed_step_into_exit_3(home: Path, fs) -> None:
    fs.create_file(home / ".jupyter")

    assert berdl_init().exit_code == 0
    result = berdl_init("--strict", "--json")

    assert result.exit_code == 3
    assert result.report["ok"] is False
    failed = [step for step in result.report["steps"] if step["status"] == "failed"]
    assert [step["name"] for step in failed] == ["dirs"]
    assert "~/.jupyter is not a folder" in failed[0]["message"]


def test_template_variables_never_show_in_a_dry_run_diff(home: Path, fs, clean_env) -> None:
    fs.create_file("/srv/templates/netrc.j2", contents="machine minio password {{ minio_password }}\n")
    clean_env.setenv("BERDL_TEMPLATES_DIR", "/srv/templates")
    clean_env.setenv("BERDL_TEMPLATE_VARS", '{"minio_password": "hunter2-s3cr3t"}')

    result = berdl_init("--dry-run")

    assert result.exit_code == 0
    assert "+machine minio password ***" in result.stdout
    assert "hunter2-s3cr3t" not in result.stdout + result.stderr


def test_template_variables_never_show_in_a_template_error(home: Path, fs, clean_env) -> None:
    fs.create_file("/srv/templates/netrc.j2", contents="{{ creds[token] }}\n")
    clean_env.setenv("BERDL_TEMPLATES_DIR", "/srv/templates")
    clean_env.setenv("BERDL_TEMPLATE_VARS", '{"creds": {}, "token": "hunter2-s3cr3t"}')

    result = berdl_init()

    assert result.exit_code == 2
    assert "hunter2-s3cr3t" not in result.stdout + result.stderr
    assert "***" in result.stderr


def test_an_unknown_login_name_is_a_settings_error(home: Path, clean_env, monkeypatch) -> None:
    clean_env.delenv("BERDL_USER")

    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 12345")

    monkeypatch.setattr("getpass.getuser", no_passwd_entry)
    result = berdl_init()

    assert result.exit_code == 2
    assert "BERDL_USER='': is not a usable user name" in result.stderr


def test_an_unexpected_error_is_one_line_and_exit_3(home: Path, monkeypatch) -> None:
    def broken(ctx):
        raise RuntimeError("a bug")

    monkeypatch.setitem(PLANNERS, "dirs", broken)
    result = berdl_init()

    assert result.exit_code == 3
    assert result.stderr.strip() == "berdl-init: internal error: RuntimeError: a bug"
    assert not (home / ".bashrc").exists()


def test_no_flock_on_the_file_system_runs_without_lock_and_ledger(home: Path, monkeypatch) -> None:
    def no_locks(fd, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr("fcntl.flock", no_locks)
    result = berdl_init("--json")

    assert result.exit_code == 0
    assert (home / ".bashrc").is_file()
    assert any("without the lock and the ledger" in warning for warning in result.report["warnings"])


def test_an_empty_home_option_is_refused(home: Path) -> None:
    result = berdl_init("--home", "")

    assert result.exit_code == 2
    assert "BERDL_HOME='': is empty" in result.stderr
