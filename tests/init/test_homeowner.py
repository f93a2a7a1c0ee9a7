"""Whose home it is (berdl_init/homeowner.py), on the real disk through the real command line.

- berdl-init records in its ledger whom a home was prepared for; a run for another user exits 3 with one
  line naming both, and writes nothing (a renamed account is let through by BERDL_RENAMED_FROM);
- a home whose files belong to another uid (the legacy hub gave each user a system uid, mode 750) is left
  as it is, with one warning naming that owner and the command an operator runs once;
- a home of BERDL's production hub, all uid 1000, gid 100, keeps its owners, and what is added is the user's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.environment import child_env
from tests.production_home import FAVORITES, write_production_home
from tests.rootrun import GID, UID, find_user_python, pythonpath, run_as_user, traversable_base
from tests.snapshots import differences, lost, snapshot

LEDGER = ".local/state/berdl-init/ledger.json"
#: The steps that make a home without building a venv (the owner checks come before every step).
NO_VENV = {"BERDL_STEPS": "dirs,dotfiles,favorites"}


def berdl(home: Path, tmp_path: Path, user: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """berdl-init --json for `user`, as root giving everything to root (the folder is root's here)."""
    settings = {"BERDL_UID": "0", "BERDL_GID": "0", "BERDL_USER": user, **NO_VENV, **env}
    return subprocess.run(
        [sys.executable, "-m", "berdl_init", "--home", str(home), "--json", *args],
        env=child_env(tmp_path / "scratch", **settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def recorded_owner(home: Path) -> str | None:
    return json.loads((home / LEDGER).read_text()).get("owner")


@pytest.fixture
def alices(tmp_path: Path) -> Path:
    """A home berdl-init prepared for alice, who then kept a notebook in it."""
    home = tmp_path / "homes" / "alice"
    home.parent.mkdir()
    ok(berdl(home, tmp_path, "alice"))
    (home / "analysis.ipynb").write_text('{"cells": []}\n')
    assert recorded_owner(home) == "alice"
    return home


# --- another user's home --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["run", "--dry-run", "--check", "run, no lock file"])
def test_a_run_for_bob_on_alices_home_exits_3_in_one_line_and_writes_nothing(
    alices: Path, tmp_path: Path, mode: str
) -> None:
    if mode == "run, no lock file":  # not even the lock is made: the ledger is read before it is taken
        (alices / ".local/state/berdl-init/lock").unlink()
    before = snapshot(alices.parent, ctime=True)
    result = berdl(alices, tmp_path, "bob", *([mode] if mode.startswith("--") else []))
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [
        f"berdl-init: the home {alices} is alice's, not bob's (berdl-init recorded its user in ~/{LEDGER}): "
        "nothing was changed; for an account renamed from alice to bob, set BERDL_RENAMED_FROM=alice"
    ]
    assert json.loads(result.stdout)["exit_status"] == 3
    assert differences(before, snapshot(alices.parent, ctime=True)) == []


def test_the_override_lets_a_renamed_account_through_and_the_home_is_then_its_own(
    alices: Path, tmp_path: Path
) -> None:
    report = ok(berdl(alices, tmp_path, "bob", BERDL_RENAMED_FROM="alice"))
    assert "the home was alice's and is bob's from now on (BERDL_RENAMED_FROM)" in report["warnings"]
    assert recorded_owner(alices) == "bob"
    assert (alices / "analysis.ipynb").read_text() == '{"cells": []}\n'
    # It is bob's now: a run for alice is the one refused, and bob's next run needs no override.
    assert berdl(alices, tmp_path, "alice").returncode == 3
    assert ok(berdl(alices, tmp_path, "bob"))["warnings"] == []


def test_the_override_names_one_earlier_owner_and_lets_no_other_through(alices: Path, tmp_path: Path) -> None:
    before = snapshot(alices.parent, ctime=True)
    result = berdl(alices, tmp_path, "bob", BERDL_RENAMED_FROM="carol")
    assert result.returncode == 3
    assert "is alice's, not bob's" in result.stderr
    assert differences(before, snapshot(alices.parent, ctime=True)) == []


def test_a_home_an_earlier_berdl_init_prepared_gets_its_user_recorded_once(
    alices: Path, tmp_path: Path
) -> None:
    """Ledgers written before berdl-init recorded the user have none: the next run records its user, and
    the run after that changes nothing."""
    ledger = json.loads((alices / LEDGER).read_text())
    del ledger["owner"]
    (alices / LEDGER).write_text(json.dumps(ledger, indent=2, sort_keys=True) + "\n")
    report = ok(berdl(alices, tmp_path, "alice"))
    assert report["changes"] == []
    assert report["warnings"] == []
    assert recorded_owner(alices) == "alice"
    before = snapshot(alices.parent, ctime=True)
    ok(berdl(alices, tmp_path, "alice"))
    assert differences(before, snapshot(alices.parent, ctime=True)) == []


def test_a_ledger_whose_owner_is_odd_text_is_refused_on_one_line(alices: Path, tmp_path: Path) -> None:
    """The ledger is the user's to edit: what it says is shown, never run nor spread over lines."""
    ledger = json.loads((alices / LEDGER).read_text())
    ledger["owner"] = "mallory\nberdl-init: all good; $(reboot)"
    (alices / LEDGER).write_text(json.dumps(ledger))
    result = berdl(alices, tmp_path, "alice")
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert "is 'mallory\\nberdl-init: all good; $(reboot)''s, not alice's" in line
    assert line.endswith("set BERDL_RENAMED_FROM")


# --- a home of another uid (the legacy hub's) -----------------------------------------------------------

LEGACY_UID, LEGACY_GID = 998, 997  # a system uid and group, as `useradd -r` gave each user there


def legacy_home(base: Path) -> Path:
    """A home as the legacy hub left it: `chown -R USER:GROUP` and `chmod -R 750`, a venv of its own."""
    home = base / "homes" / "alice"
    venv = home / ".virtualenvs/envs/alice_default_env"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /opt/legacy/bin\nversion_info = 3.11.9\n")
    (home / ".bashrc").write_text("source ~/.virtualenvs/envs/alice_default_env/bin/activate\n")
    (home / "work.ipynb").write_text('{"cells": []}\n')
    for folder, dirs, files in os.walk(home):
        for name in [".", *dirs, *files]:
            os.lchown(Path(folder, name), LEGACY_UID, LEGACY_GID)
            os.chmod(Path(folder, name), 0o750)
    return home


@pytest.fixture
def base() -> Iterator[Path]:
    """As root: a folder uid 1000 can traverse (berdl-init goes on as the user once the home is theirs)."""
    if os.geteuid() != 0:
        skip_or_fail("these tests plant files of another uid (os.geteuid() != 0 here)")
    with traversable_base("berdl-init-legacy-") as path:
        yield path


@pytest.fixture(scope="module")
def user_python() -> Path:
    return find_user_python()


def from_root(python: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """berdl-init --json as root, as the initContainer runs it for uid 1000, gid 100."""
    settings = {"BERDL_UID": str(UID), "BERDL_GID": "100", "BERDL_USER": "alice", **NO_VENV, **env}
    return subprocess.run(
        [str(python), "-m", "berdl_init", "--home", str(home), "--json"],
        env=child_env(home.parent.parent / "tmp", PYTHONPATH=pythonpath(), HOME=str(home), **settings),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_legacy_home_is_left_as_it_is_with_one_warning_naming_its_owner(
    base: Path, user_python: Path
) -> None:
    home = legacy_home(base)
    before = snapshot(home.parent, ctime=True)
    report = ok(from_root(user_python, home))
    assert report["warnings"] == [
        f"the home {home} belongs to uid {LEGACY_UID} (gid {LEGACY_GID}), not to uid {UID}, as homes of "
        "BERDL's legacy hub do: berdl-init changed nothing in it, and the notebook cannot use its files "
        f"until an operator runs once, as root, `chown -R {UID}:100 {home}` (on the node: the home's "
        "folder there; deploy/README.md, Migrating homes)"
    ]
    assert report["changes"] == []
    assert {step["message"] for step in report["steps"]} == {"the home belongs to another uid"}
    assert differences(before, snapshot(home.parent, ctime=True)) == []

    # The operator's command; then the next start prepares the home as the user's, and keeps their files.
    subprocess.run(["chown", "-R", f"{UID}:100", str(home)], check=True)
    after = ok(from_root(user_python, home))
    assert not any("belongs to uid" in warning for warning in after["warnings"])
    assert (home / ".bashrc.berdl-new").is_file()
    assert (home / "work.ipynb").read_text() == '{"cells": []}\n'


def test_a_home_whose_folder_was_given_back_but_not_its_files_is_still_left_alone(
    base: Path, user_python: Path
) -> None:
    """An operator's `chown` without -R, or a first run of an older berdl-init, gave the folder alone."""
    home = legacy_home(base)
    os.chown(home, UID, 100)
    before = snapshot(home.parent, ctime=True)
    (warning,) = ok(from_root(user_python, home))["warnings"]
    assert warning.startswith(f"~/.bashrc in the home {home} belongs to uid {LEGACY_UID} (gid {LEGACY_GID})")
    assert differences(before, snapshot(home.parent, ctime=True)) == []


def test_berdl_init_as_the_user_leaves_a_legacy_home_alone_too(base: Path, user_python: Path) -> None:
    """A PVC home runs berdl-init as the user's uid (no root): the same warning, not a failure."""
    home = legacy_home(base)
    before = snapshot(home.parent, ctime=True)
    env = {"PYTHONPATH": pythonpath(), "HOME": str(home), "BERDL_USER": "alice", "TMPDIR": str(base / "tmp")}
    result = run_as_user(
        [str(user_python), "-m", "berdl_init", "--home", str(home), "--json"], env, check=False
    )
    assert result.returncode == 0, result.stderr
    (warning,) = json.loads(result.stdout)["warnings"]
    assert warning.startswith(
        f"the home {home} belongs to uid {LEGACY_UID} (gid {LEGACY_GID}), not to uid {UID}"
    )
    assert f"`chown -R {UID}:{GID} {home}`" in warning
    assert differences(before, snapshot(home.parent, ctime=True)) == []


def test_a_production_home_as_its_hook_left_it_keeps_every_owner_and_gains_only_the_users_files(
    base: Path, user_python: Path
) -> None:
    """spark_notebook's root start hook leaves every file of a home to uid 1000, gid 100 (its `chown -R`):
    berdl-init as root for that user keeps each file's bytes, mode and owner, the favorites merged, and all
    it adds is the user's, 1000:100, as the notebook reads and writes them."""
    home = base / "alice"
    write_production_home(home, "alice")
    for folder, dirs, files in os.walk(home):
        for name in [".", *dirs, *files]:
            os.lchown(Path(folder, name), UID, 100)
    before = snapshot(home)
    report = ok(from_root(user_python, home))
    assert not any("belongs to uid" in warning for warning in report["warnings"])
    assert lost(before, snapshot(home), merged={FAVORITES}) == []
    owners = {
        path: (entry.uid, entry.gid)
        for path, entry in snapshot(home).items()
        if (entry.uid, entry.gid) != (UID, 100)
    }
    assert owners == {}
    assert (home / ".bash_profile.berdl-new").is_file()  # berdl-init's version, beside the user's own
