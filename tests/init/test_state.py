"""The ledger and the lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from berdl_init import runner
from berdl_init.errors import HomeError
from berdl_init.safefs import SafeHome
from berdl_init.settings import Settings
from berdl_init.state import (
    LEDGER,
    LOCK,
    Ledger,
    home_lock,
    read_ledger,
    read_ledger_again,
    save_ledger,
)


def test_ledger_round_trip_and_no_rewrite_when_equal(tmp_path: Path) -> None:
    ledger = Ledger(files={".bashrc": "ab"}, renders={"bashrc.j2": {"inputs": "1", "output": "2"}})
    with SafeHome.open(tmp_path) as home:
        save_ledger(home, ledger)
        mtime = (tmp_path / LEDGER).stat().st_mtime_ns
        read = read_ledger(home)
        loaded, warning = read.ledger, read.warning
        save_ledger(home, loaded)

    assert warning is None
    assert loaded == ledger
    assert (tmp_path / LEDGER).stat().st_mtime_ns == mtime


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"format": 99}', b'{"format": 1, "files": {"a": 1}}'])
def test_an_unreadable_ledger_is_empty_with_a_warning(tmp_path: Path, content: bytes) -> None:
    (tmp_path / LEDGER).parent.mkdir(parents=True)
    (tmp_path / LEDGER).write_bytes(content)
    with SafeHome.open(tmp_path) as home:
        read = read_ledger(home)
        ledger, warning = read.ledger, read.warning

    assert ledger == Ledger()
    assert "treated as the user's" in warning


def test_under_the_lock_the_ledger_is_read_again_only_when_another_run_saved_it(tmp_path: Path) -> None:
    """A warm run reads the ledger once (before the lock, to refuse another user's home); once the lock is
    held, what another run saved meanwhile (a new file: saves replace it) is read again."""
    with SafeHome.open(tmp_path) as home:
        save_ledger(home, Ledger(owner="alice"))
        before = read_ledger(home)
        assert read_ledger_again(home, before) is before  # unchanged: not read again

        save_ledger(home, Ledger(owner="bob"))  # another run, between this one's read and its lock
        again = read_ledger_again(home, before)
        assert again.ledger.owner == "bob"
    with SafeHome.open(tmp_path) as home:
        (tmp_path / LEDGER).unlink()
        gone = read_ledger_again(home, before)
        assert (gone.ledger, gone.identity) == (Ledger(), None)


def test_the_lock_is_an_flock_held_inside_the_block(tmp_path: Path) -> None:
    with SafeHome.open(tmp_path) as home, home_lock(home, timeout=1):
        (tmp_path / LOCK).touch()
        other = os.open(tmp_path / LOCK, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)


def test_a_run_gives_up_when_another_holds_the_lock(tmp_path: Path, clean_env) -> None:
    home = tmp_path / "alice"
    home.mkdir()
    settings = Settings(home=home, user="alice", uid=os.getuid(), gid=os.getgid(), steps=["dirs"])
    runner.run(settings, dry_run=False)
    holder = os.open(home / LOCK, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(HomeError, match=r"held the lock on .* for 0\.3 s"):
            runner.run(settings, dry_run=False, lock_timeout=0.3)
    finally:
        os.close(holder)
    assert runner.run(settings, dry_run=False, lock_timeout=0.3).ok
