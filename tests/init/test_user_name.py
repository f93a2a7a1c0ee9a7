"""Whom the home is prepared for, by name: BERDL_USER, $JUPYTERHUB_USER or $NB_USER when set; otherwise,
as root, the passwd entry of the user berdl-init becomes (BERDL_UID, else the home's owner), never root's
login name. Without such an entry a real run stops with exit 2 before any change; a dry run warns.

On pyfakefs, as root by a patch (berdl-init never really drops privileges here) and with a passwd database
of one entry, so that the outcome depends on no real user of this machine.
"""

from __future__ import annotations

import os
import pwd

import pytest

from berdl_init import privileges
from tests.init.homes import HOME, berdl_init, fake_home
from tests.snapshots import snapshot

PASSWD = {0: "root", 1000: "carol"}
NO_ENTRY = 1001


def getpwuid(uid: int) -> pwd.struct_passwd:
    if uid not in PASSWD:
        raise KeyError(f"getpwuid(): uid not found: {uid}")
    return pwd.struct_passwd((PASSWD[uid], "x", uid, uid, "", f"/home/{PASSWD[uid]}", "/bin/bash"))


@pytest.fixture
def as_root(fs, clean_env: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """A fake home, berdl-init started as root with no setting naming the user; returns whom it became."""
    fake_home(fs, clean_env)
    clean_env.delenv("BERDL_USER")
    clean_env.delenv("BERDL_UID")
    clean_env.delenv("BERDL_GID")
    became: list[tuple[int, int]] = []
    clean_env.setattr(privileges, "is_root", lambda: True)
    clean_env.setattr(privileges, "drop_privileges", lambda uid, gid: became.append((uid, gid)))
    clean_env.setattr(pwd, "getpwuid", getpwuid)
    return became


def bashrc_user() -> tuple[str, str]:
    """The user and the venv that ~/.bashrc was written for."""
    lines = (HOME / ".bashrc").read_text().splitlines()
    (venv,) = [line.split("=", 1)[1].strip("'") for line in lines if line.startswith("berdl_venv=")]
    return lines[0], venv


def test_as_root_the_user_is_BERDL_UID_s_passwd_entry(as_root, monkeypatch) -> None:
    monkeypatch.setenv("BERDL_UID", "1000")
    monkeypatch.setenv("BERDL_GID", "1000")

    result = berdl_init()

    assert result.exit_code == 0, result.stderr
    assert bashrc_user() == (
        "# ~/.bashrc for carol, written by berdl-init.",
        f"{HOME}/.virtualenvs/envs/carol_default_env",
    )
    assert as_root == [(1000, 1000)]


def test_as_root_without_BERDL_UID_the_home_s_owner_names_the_user(as_root) -> None:
    os.chown(HOME, 1000, 1000)

    result = berdl_init()

    assert result.exit_code == 0, result.stderr
    assert bashrc_user()[1] == f"{HOME}/.virtualenvs/envs/carol_default_env"


def test_a_uid_with_no_passwd_entry_stops_a_real_run_before_any_change(as_root, monkeypatch) -> None:
    monkeypatch.setenv("BERDL_UID", str(NO_ENTRY))
    monkeypatch.setenv("BERDL_GID", str(NO_ENTRY))
    before = snapshot(HOME.parent)

    result = berdl_init()

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"berdl-init: invalid settings: BERDL_USER: not set, and uid {NO_ENTRY} has no passwd entry to name "
        "the user after; set BERDL_USER to the user's name (it names the venv)"
    ]
    assert snapshot(HOME.parent) == before
    assert as_root == []


def test_a_dry_run_for_a_uid_with_no_passwd_entry_warns_and_names_nothing_after_root(
    as_root, monkeypatch
) -> None:
    monkeypatch.setenv("BERDL_UID", str(NO_ENTRY))
    monkeypatch.setenv("BERDL_GID", str(NO_ENTRY))
    before = snapshot(HOME.parent)

    report = berdl_init("--dry-run", "--json").report
    shown = berdl_init("--dry-run")

    assert shown.exit_code == 0, shown.stderr
    (warning,) = [w for w in report["warnings"] if "passwd" in w]
    assert warning.startswith(f"uid {NO_ENTRY} has no passwd entry and BERDL_USER is not set")
    assert f"warning: {warning}" in shown.stdout
    assert f"+# ~/.bashrc for uid{NO_ENTRY}, written by berdl-init." in shown.stdout
    assert f"+berdl_venv={HOME}/.virtualenvs/envs/uid{NO_ENTRY}_default_env" in shown.stdout
    assert "for root" not in shown.stdout
    assert "root_default_env" not in shown.stdout
    assert snapshot(HOME.parent) == before


@pytest.mark.parametrize("variable", ["BERDL_USER", "JUPYTERHUB_USER", "NB_USER"])
def test_a_user_named_by_a_variable_keeps_that_name_as_root(as_root, monkeypatch, variable: str) -> None:
    monkeypatch.setenv("BERDL_UID", str(NO_ENTRY))
    monkeypatch.setenv("BERDL_GID", str(NO_ENTRY))
    monkeypatch.setenv(variable, "dave")

    result = berdl_init()

    assert result.exit_code == 0, result.stderr
    assert bashrc_user() == (
        "# ~/.bashrc for dave, written by berdl-init.",
        f"{HOME}/.virtualenvs/envs/dave_default_env",
    )


def test_a_venv_folder_that_is_set_is_kept_when_the_owner_names_the_user(as_root, monkeypatch) -> None:
    monkeypatch.setenv("BERDL_UID", "1000")
    monkeypatch.setenv("BERDL_GID", "1000")
    monkeypatch.setenv("BERDL_VENV_DIR", f"{HOME}/envs/mine")

    result = berdl_init()

    assert result.exit_code == 0, result.stderr
    assert bashrc_user() == ("# ~/.bashrc for carol, written by berdl-init.", f"{HOME}/envs/mine")


def test_an_ordinary_user_is_their_login_name(as_root, monkeypatch) -> None:
    monkeypatch.setattr(privileges, "is_root", lambda: False)
    monkeypatch.setattr("getpass.getuser", lambda: "frank")

    result = berdl_init()

    assert result.exit_code == 0, result.stderr
    assert bashrc_user()[1] == f"{HOME}/.virtualenvs/envs/frank_default_env"
