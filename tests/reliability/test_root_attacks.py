"""Root safety: berdl-init started as root, with BERDL_UID/BERDL_GID of uid 1000, on planted homes.

Each case plants a layout in (or at) the home: symlinks at every managed path and at every folder on the
way to one, pointing at files and folders outside the home; a home that is a symlink; hardlinks to files
outside; FIFOs and devices where a file is expected; and folders swapped for symlinks in a loop by a racing
thread while berdl-init runs. Next to the home is a sentinel tree, partly the user's (so that only
berdl-init's refusal protects it, not the kernel) and partly root's. After the run, nothing outside the
home may differ: every entry's type, mode, owner, bytes or link target, mtime and ctime are compared.

The table of cases in docs/reliability.md is rendered from CASES (see test_the_documented_table_...).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import FAVORITES_REL, GID, LEDGER_REL, UID, VENV_REL, berdl, diff, tree

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("as_root")]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
LAB = ".jupyter/lab"
SETTINGS_DIRS = [
    ".jupyter/lab",
    ".jupyter/lab/user-settings",
    ".jupyter/lab/user-settings/@jlab-enhanced",
    ".jupyter/lab/user-settings/@jlab-enhanced/favorites",
]
#: How many runs each racing case makes (the race lands differently each time).
RACE_RUNS = 6


@dataclass
class Place:
    """The home of one case and the sentinel tree beside it."""

    base: Path

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def outside(self) -> Path:
        return self.base / "outside"


@dataclass(frozen=True)
class Case:
    id: str
    planted: str
    #: exit status expected (None: a race, where it may be 0 or 3)
    exit: int | None
    #: steps expected to fail
    failed: frozenset[str]
    did: str
    plant: Callable[[Place], None]
    #: a racing swap (home-relative path; "." for the home itself) while berdl-init runs
    race: str | None = None
    #: where the racing symlink points, in the outside tree
    race_target: str = "d"
    #: a check of the home after the run
    check: Callable[[Place], None] | None = None


# -- planting ----------------------------------------------------------------------------------------


def own(path: Path, uid: int = UID, gid: int = GID) -> None:
    os.lchown(path, uid, gid)


def make_dirs(place: Place, rel: str) -> Path:
    path = place.home
    for part in Path(rel).parts:
        path = path / part
        if not path.exists():
            path.mkdir()
            own(path)
    return path


def make_parent(place: Place, rel: str) -> None:
    parent = Path(rel).parent
    if parent != Path("."):
        make_dirs(place, str(parent))


def link(place: Place, rel: str, target: Path) -> None:
    path = place.home / rel
    make_parent(place, rel)
    path.symlink_to(target)
    own(path)


def hardlink(place: Place, rel: str, target: Path) -> None:
    make_parent(place, rel)
    os.link(target, place.home / rel)


def fifo(place: Place, rel: str) -> None:
    make_parent(place, rel)
    os.mkfifo(place.home / rel, 0o644)
    own(place.home / rel)


def device(place: Place, rel: str) -> None:
    make_parent(place, rel)
    os.mknod(place.home / rel, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null


def links_to(rel: str, target: str) -> Callable[[Place], None]:
    def plant(place: Place) -> None:
        link(place, rel, place.outside / target)

    return plant


def still_links(rel: str, target: str) -> Callable[[Place], None]:
    def check(place: Place) -> None:
        assert os.readlink(place.home / rel) == str(place.outside / target)

    return check


def is_regular(rel: str) -> Callable[[Place], None]:
    def check(place: Place) -> None:
        st = (place.home / rel).lstat()
        assert stat.S_ISREG(st.st_mode)
        assert st.st_nlink == 1
        assert (st.st_uid, st.st_gid) == (UID, GID)

    return check


def aside_links_to(rel: str, target: str) -> Callable[[Place], None]:
    def check(place: Place) -> None:
        path = place.home / rel
        (aside,) = path.parent.glob(f"{path.name}.berdl-old-*")
        assert os.readlink(aside) == str(place.outside / target)
        assert (path / "pyvenv.cfg").is_file()

    return check


def both(*checks: Callable[[Place], None]) -> Callable[[Place], None]:
    def check(place: Place) -> None:
        for one in checks:
            one(place)

    return check


def home_links_to(target: str) -> Callable[[Place], None]:
    def plant(place: Place) -> None:
        place.home.rmdir()
        place.home.symlink_to(place.outside / target)

    return plant


def root_home_with_jupyter_link(place: Place) -> None:
    own(place.home, 0, 0)
    place.home.chmod(0o755)
    (place.home / ".jupyter").symlink_to(place.outside / "rootd")


def forged_ledger_hardlink(place: Place) -> None:
    """.bashrc is a hardlink to the user's file outside, and the ledger claims berdl-init wrote it."""
    target = place.outside / "file.txt"
    os.link(target, place.home / ".bashrc")
    ledger = {"format": 1, "files": {".bashrc": hashlib.sha256(target.read_bytes()).hexdigest()}}
    state = make_dirs(place, ".local/state/berdl-init")
    (state / "ledger.json").write_text(json.dumps(ledger))
    own(state / "ledger.json")


def edited_bashrc_and_new_link(place: Place) -> None:
    (place.home / ".bashrc").write_text("# mine\n")
    own(place.home / ".bashrc")
    link(place, ".bashrc.berdl-new", place.outside / "file.txt")


def venv_cfg_link(place: Place) -> None:
    venv = make_dirs(place, VENV_REL)
    (venv / "pyvenv.cfg").symlink_to(place.outside / "file.txt")
    own(venv / "pyvenv.cfg")


def race_ready(rel: str) -> Callable[[Place], None]:
    def plant(place: Place) -> None:
        if rel != ".":
            make_dirs(place, rel)

    return plant


# -- the cases -----------------------------------------------------------------------------------------

NO_DIRS = frozenset({"dirs"})
NO_VENV = frozenset({"venv"})
NONE: frozenset[str] = frozenset()

CASES = [
    Case("home-link-dir", "the home is a symlink to a folder of the user's outside", 3, NONE,
         "refuses the home (exit 3); nothing created or chowned", home_links_to("d")),
    Case("home-link-root-dir", "the home is a symlink to a root-owned folder", 3, NONE,
         "refuses the home (exit 3); the folder is not chowned", home_links_to("rootd")),
    Case("home-link-file", "the home is a symlink to a file outside", 3, NONE,
         "refuses the home (exit 3)", home_links_to("file.txt")),
    Case("root-home-jupyter-link", "a root-owned home; its .jupyter -> a root-owned folder", 0, NO_DIRS,
         "chowns the home folder only, then as the user: dirs fails, favorites warns",
         root_home_with_jupyter_link),
    Case(".jupyter", "~/.jupyter -> a folder outside", 0, NO_DIRS,
         "dirs fails, favorites warns; the link stays", links_to(".jupyter", "d"),
         check=still_links(".jupyter", "d")),
    Case(".jupyter-file", "~/.jupyter -> a file outside", 0, NO_DIRS,
         "dirs fails, favorites warns; the link stays", links_to(".jupyter", "file.txt"),
         check=still_links(".jupyter", "file.txt")),
    Case(".jupyter/runtime", "~/.jupyter/runtime -> a folder outside (a chmod 700 target)", 0, NO_DIRS,
         "dirs fails; no chmod through the link", links_to(".jupyter/runtime", "d"),
         check=still_links(".jupyter/runtime", "d")),
    Case(".jupyter/data", "~/.jupyter/data -> a folder outside", 0, NO_DIRS,
         "dirs fails; the kernelspec is not written through it", links_to(".jupyter/data", "d")),
    *(
        Case(rel, f"~/{rel} -> a folder outside", 0, NONE,
             "favorites warns and leaves the file alone", links_to(rel, "d"), check=still_links(rel, "d"))
        for rel in SETTINGS_DIRS
    ),
    Case("favorites-file-link", "the favorites file -> a favorites file outside", 0, NONE,
         "favorites warns, leaves the link", links_to(FAVORITES_REL, "fav.json"),
         check=still_links(FAVORITES_REL, "fav.json")),
    Case("favorites-file-hardlink", "the favorites file is a hardlink to a file outside", 0, NONE,
         "merges, and the rename replaces the link: the outside file keeps its bytes",
         lambda p: hardlink(p, FAVORITES_REL, p.outside / "fav.json"), check=is_regular(FAVORITES_REL)),
    Case("favorites-file-fifo", "the favorites file is a FIFO", 0, NONE,
         "favorites warns (not a regular file), never opens it", lambda p: fifo(p, FAVORITES_REL)),
    Case("favorites-file-device", "the favorites file is a character device (1,3)", 0, NONE,
         "favorites warns, never opens it", lambda p: device(p, FAVORITES_REL)),
    Case(".bashrc-link", "~/.bashrc -> a file outside", 0, NONE,
         "keeps the link, writes ~/.bashrc.berdl-new, warns", links_to(".bashrc", "file.txt"),
         check=both(still_links(".bashrc", "file.txt"), is_regular(".bashrc.berdl-new"))),
    Case(".bash_profile-link", "~/.bash_profile -> a file outside", 0, NONE,
         "keeps the link, writes ~/.bash_profile.berdl-new, warns", links_to(".bash_profile", "file.txt"),
         check=both(still_links(".bash_profile", "file.txt"), is_regular(".bash_profile.berdl-new"))),
    Case(".bashrc-hardlink", "~/.bashrc is a hardlink to a file outside", 0, NONE,
         "the user's: kept, ~/.bashrc.berdl-new written beside it",
         lambda p: hardlink(p, ".bashrc", p.outside / "file.txt"), check=is_regular(".bashrc.berdl-new")),
    Case(".bashrc-hardlink-forged-ledger", "~/.bashrc hardlinked outside, the ledger claiming it", 0, NONE,
         "replaces ~/.bashrc by a rename: the outside file keeps its bytes", forged_ledger_hardlink,
         check=is_regular(".bashrc")),
    Case(".bashrc.berdl-new-link", "~/.bashrc edited, ~/.bashrc.berdl-new -> a file outside", 0, NONE,
         "the rename replaces the link with a file", edited_bashrc_and_new_link,
         check=is_regular(".bashrc.berdl-new")),
    Case("temp-name-link", "the temporary name ~/..bashrc.berdl-tmp -> a file outside", 0, NONE,
         "unlinks it and creates its file with O_EXCL", links_to("..bashrc.berdl-tmp", "file.txt"),
         check=is_regular(".bashrc")),
    Case(".bashrc-fifo", "~/.bashrc is a FIFO", 0, NONE,
         "never opens it; ~/.bashrc.berdl-new written, warns", lambda p: fifo(p, ".bashrc")),
    Case(".bashrc-device", "~/.bashrc is a character device (1,3)", 0, NONE,
         "never opens it; ~/.bashrc.berdl-new written, warns", lambda p: device(p, ".bashrc")),
    Case(".local", "~/.local -> a folder outside", 0, NONE,
         "does not follow it: runs without lock and ledger, warns", links_to(".local", "d")),
    Case(".local/state", "~/.local/state -> a folder outside", 0, NONE,
         "does not follow it: runs without lock and ledger, warns", links_to(".local/state", "d")),
    Case("state-dir", "~/.local/state/berdl-init -> a folder outside", 0, NONE,
         "does not follow it: runs without lock and ledger, warns", links_to(".local/state/berdl-init", "d")),
    Case("lock-link", "the lock file -> a file outside", 0, NONE,
         "never opens it (O_NOFOLLOW): runs without lock and ledger, warns",
         links_to(".local/state/berdl-init/lock", "file.txt")),
    Case("ledger-link", "the ledger -> a ledger-like file outside", 0, NONE,
         "warns, treats every dotfile as the user's, replaces the link with its ledger",
         links_to(LEDGER_REL, "ledger.json"), check=is_regular(LEDGER_REL)),
    Case("ledger-hardlink", "the ledger is a hardlink to a file outside", 0, NONE,
         "reads it, then the rename replaces the link",
         lambda p: hardlink(p, LEDGER_REL, p.outside / "ledger.json"), check=is_regular(LEDGER_REL)),
    Case(".virtualenvs", "~/.virtualenvs -> a folder outside", 0, NO_VENV,
         "venv fails; nothing built through the link", links_to(".virtualenvs", "d")),
    Case(".virtualenvs/envs", "~/.virtualenvs/envs -> a folder outside", 0, NO_VENV,
         "venv fails; nothing built through the link", links_to(".virtualenvs/envs", "d")),
    Case("venv-dir-link", "the venv folder -> a folder outside", 0, NONE,
         "not a venv: the link itself is moved aside, a venv is built in its place", links_to(VENV_REL, "d"),
         check=aside_links_to(VENV_REL, "d")),
    Case("venv-cfg-link", "the venv's pyvenv.cfg -> a file outside", 0, NONE,
         "not a venv: moved aside (never deleted) and rebuilt", venv_cfg_link),
    Case("kernels-link", "~/.jupyter/data/kernels -> a folder outside", 0, NONE,
         "no kernelspec written through it", links_to(".jupyter/data/kernels", "d")),
    Case("kernel-dir-link", "~/.jupyter/data/kernels/python3 -> a folder outside", 0, NONE,
         "no kernelspec written through it", links_to(".jupyter/data/kernels/python3", "d")),
    Case("kernel.json-link", "the kernelspec's kernel.json -> a file outside", 0, NONE,
         "not written through (ipykernel absent: nothing written at all)",
         links_to(".jupyter/data/kernels/python3/kernel.json", "file.txt"),
         check=still_links(".jupyter/data/kernels/python3/kernel.json", "file.txt")),
    Case("race-home", "the home swapped with a symlink to a root-owned folder, in a loop", None, NONE,
         "root: fixes the real folder or refuses it (exit 3); then the kernel refuses the user's writes",
         race_ready("."), race=".", race_target="rootd"),
    Case("race-home-users", "the same, the symlink pointing at a folder the user can write", None, NONE,
         "writes through the folder it opened, or refuses the symlink (exit 3); the venv is built outside "
         "the home and copied in by descriptor", race_ready("."), race="."),
    Case("race-.jupyter", "~/.jupyter swapped with a symlink to outside, in a loop", None, NONE,
         "writes through the real folder or fails the step", race_ready(".jupyter"), race=".jupyter"),
    Case("race-favorites-dir", "the favorites folder swapped with a symlink, in a loop", None, NONE,
         "writes through the real folder or warns", race_ready(SETTINGS_DIRS[-1]), race=SETTINGS_DIRS[-1]),
    Case("race-venv-parent", "the venv's parent swapped with a symlink to a root-owned folder, in a loop",
         None, NONE, "builds in the real folder or fails the venv step; the kernel refuses the user's writes",
         race_ready(".virtualenvs/envs"), race=".virtualenvs/envs", race_target="rootd"),
    Case("race-venv-parent-users", "the same, the symlink pointing at a folder the user can write", None,
         NONE,
         "the venv is built outside the home and copied in by descriptor: nothing lands outside, even "
         "where the user could write", race_ready(".virtualenvs/envs"), race=".virtualenvs/envs"),
    Case("race-state-dir", "~/.local/state swapped with a symlink, in a loop", None, NONE,
         "locks and writes the ledger in the real folder, or runs without them", race_ready(".local/state"),
         race=".local/state"),
]  # fmt: skip


# -- the sentinel tree ---------------------------------------------------------------------------------


def make_outside(outside: Path) -> None:
    """Files and folders of the user's (writable by uid 1000) and of root's."""
    outside.mkdir()
    own(outside)
    (outside / "d").mkdir()
    (outside / "d" / "keep.txt").write_text("the user's file outside the home\n")
    (outside / "file.txt").write_text("export SENTINEL=1\n")
    fav = {"favorites": [{"root": "/", "path": "elsewhere", "name": "x"}]}
    (outside / "fav.json").write_text(json.dumps(fav))
    (outside / "ledger.json").write_text(json.dumps({"format": 1, "files": {}, "renders": {}}))
    for path in [outside / "d", *(outside / "d").iterdir(), *outside.glob("*.*")]:
        own(path)
    (outside / "rootd").mkdir()
    (outside / "rootd" / "secret").write_text("root's\n")
    (outside / "rootd" / "secret").chmod(0o600)
    (outside / "rootfile").write_text("root's\n")


def outside_snapshot(place: Place) -> dict[str, Any]:
    """Everything in the base folder but the home and the scratch folder, with mtimes and ctimes.

    A hardlink that the home held is replaced by a rename: the outside file's link count, and so its
    ctime, change while its bytes, mode, owner and mtime do not; for such files the ctime is left out.
    """
    snapshot = {}
    for rel, entry in tree(place.outside, times=True).items():
        path = place.outside / rel
        if stat.S_ISREG(entry[0]) and path.stat().st_nlink > 1:
            entry = entry[:-1]
        snapshot[rel] = entry
    base = place.base.lstat()
    snapshot["<base>"] = (base.st_mode, base.st_uid, base.st_gid)
    return snapshot


def without_nlink_ctimes(snapshot: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """`after`, with the ctime dropped wherever `snapshot` dropped it."""
    return {rel: entry[: len(snapshot[rel])] if rel in snapshot else entry for rel, entry in after.items()}


# -- racing ------------------------------------------------------------------------------------------


class Swapper:
    """Swap a folder with a symlink to the outside tree, again and again, until stopped."""

    def __init__(self, place: Place, rel: str, target: str) -> None:
        self.path = place.home if rel == "." else place.home / rel
        self.aside = self.path.with_name(self.path.name + ".swapped")
        self.target = place.outside / target
        self.stop = threading.Event()
        self.swaps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                os.rename(self.path, self.aside)
            except OSError:
                continue
            with contextlib.suppress(OSError):
                os.symlink(self.target, self.path)
                self.swaps += 1
                os.unlink(self.path)
            try:
                os.rename(self.aside, self.path)
            except OSError:  # berdl-init made a new folder there meanwhile: keep both, under a fresh name
                os.rename(self.aside, self.aside.with_name(f"{self.aside.name}.{uuid.uuid4().hex[:12]}"))

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if self.aside.exists():  # stopped between the two renames of a swap
            if self.path.is_symlink():
                os.unlink(self.path)
            if os.path.lexists(self.path):
                os.rename(self.aside, self.aside.with_name(f"{self.aside.name}.last"))
            else:
                os.rename(self.aside, self.path)


# -- the tests -----------------------------------------------------------------------------------------


def new_place(base: Path) -> Place:
    place = Place(base)
    make_outside(place.outside)
    place.home.mkdir()
    own(place.home)
    return place


def run_case(case: Case, place: Place, user_python: Path) -> tuple[dict, Any]:
    settings = {"BERDL_UID": str(UID), "BERDL_GID": str(GID)}
    return berdl(place.home, place.base / "tmp", status=None, python=user_python, **settings)


def new_entries_are_the_users(before: dict[str, Any], place: Place) -> None:
    if place.home.is_symlink() or not place.home.is_dir():
        return
    after = tree(place.home)
    created = {rel: entry for rel, entry in after.items() if rel not in before and rel != "."}
    wrong = {rel: entry[2:4] for rel, entry in created.items() if entry[2:4] != (UID, GID)}
    assert wrong == {}, "created in the home with another owner than the user's"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_nothing_outside_the_home_changes(case: Case, shared_base: Path, user_python: Path) -> None:
    place = new_place(shared_base)
    case.plant(place)
    before = outside_snapshot(place)
    home_before = tree(place.home) if place.home.is_dir() and not place.home.is_symlink() else {}

    runs = RACE_RUNS if case.race else 1
    statuses = []
    for _ in range(runs):
        if case.race:
            with Swapper(place, case.race, case.race_target) as swapper:
                report, result = run_case(case, place, user_python)
            assert swapper.swaps > 0
        else:
            report, result = run_case(case, place, user_python)
        statuses.append(result.returncode)
        after = outside_snapshot(place)
        changed = diff(before, without_nlink_ctimes(before, after))
        assert changed == [], result.stderr
        assert "Traceback" not in result.stderr, result.stderr

        if case.exit is None:
            assert result.returncode in (0, 3), result.stderr
        else:
            assert result.returncode == case.exit, result.stderr
        if result.returncode == 0:
            failed = {step["name"] for step in report["steps"] if step["status"] == "failed"}
            if case.exit is not None:
                assert failed == case.failed, [s for s in report["steps"] if s["status"] == "failed"]
        else:
            assert report["ok"] is False
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    if case.check is not None:
        case.check(place)
    new_entries_are_the_users(home_before, place)


def table() -> str:
    """The table of cases for docs/reliability.md."""
    lines = ["| case | planted | exit | what berdl-init did |", "|---|---|---|---|"]
    for case in CASES:
        status = "0 or 3" if case.exit is None else str(case.exit)
        if case.failed:
            status += f" ({', '.join(sorted(case.failed))} failed)"
        lines.append(f"| `{case.id}` | {case.planted} | {status} | {case.did} |")
    return "\n".join(lines) + "\n"


def test_the_documented_table_matches_the_cases() -> None:
    """docs/reliability.md holds table() verbatim (print it with `python -m tests.reliability.tables`)."""
    assert len(CASES) >= 20
    assert table() in DOCS.read_text()


def test_a_run_on_a_clean_home_leaves_the_outside_alone(shared_base: Path, user_python: Path) -> None:
    """The control case: the same comparison on a home with nothing planted finds nothing either."""
    place = new_place(shared_base)
    before = outside_snapshot(place)
    report, result = run_case(CASES[0], place, user_python)
    assert result.returncode == 0, result.stderr
    assert report["ok"] is True
    assert outside_snapshot(place) == before
    assert all(entry[2:4] == (UID, GID) for entry in tree(place.home).values())
