"""Bad input: wrong settings, broken templates, odd files in the home, lying venvs, full and read-only disks.

Each case gives one clear line (stderr), the documented exit status (2: settings, nothing changed; 3: the
home cannot be used; 0 with a warning or a failed step otherwise) and nothing half-done: no temporary file
left, no managed file partial. Real processes on a real disk (tmpfs for the disk cases), as root.
Cases that tests/init/test_cli.py, test_favorites.py and test_home_setup.py already cover are not repeated.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from berdl_init.settings import PACKAGED_TEMPLATES
from tests.reliability.conftest import (
    FAVORITES_REL,
    GID,
    LEDGER_REL,
    UID,
    VENV_REL,
    berdl,
    diff,
    step_status,
    tree,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("as_root")]

NO_VENV = {"BERDL_STEPS": "dirs,dotfiles,favorites"}
AS_USER = {"BERDL_UID": str(UID), "BERDL_GID": str(GID)}
BIG = 5 * 1024 * 1024


def assert_one_line(stderr: str, prefix: str, fragment: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(prefix), stderr
    assert fragment in lines[0], stderr


def assert_nothing_half_done(home: Path) -> None:
    leftovers = [p for p in home.rglob("*") if "berdl-tmp" in p.name]
    assert leftovers == []


# -- settings: exit 2, one line naming the setting and the value, nothing changed ----------------------

BAD_SETTINGS = [
    ("BERDL_GID", "staff", "BERDL_GID='staff': Input should be a valid integer"),
    ("BERDL_GID", "-5", "BERDL_GID='-5': Input should be greater than or equal to 0"),
    ("BERDL_UID", "1.5", "BERDL_UID='1.5': Input should be a valid integer"),
    ("BERDL_STEPS", "dirs;venv", "BERDL_STEPS[0]='dirs;venv': Input should be 'dirs'"),
    ("BERDL_TEMPLATES_DIR", "templates", "BERDL_TEMPLATES_DIR='templates': is not absolute"),
    ("BERDL_TEMPLATES_DIR", "/etc/hostname", "BERDL_TEMPLATES_DIR='/etc/hostname': no such folder"),
    ("BERDL_TEMPLATE_VARS", "[1, 2]", "BERDL_TEMPLATE_VARS: Input should be a valid dictionary"),
    ("BERDL_TEMPLATE_VARS", '"text"', "BERDL_TEMPLATE_VARS: Input should be a valid dictionary"),
    ("BERDL_VENV_DIR", "venvs/mine", "BERDL_VENV_DIR='venvs/mine': is not absolute"),
    ("BERDL_VENV_DIR", "{home}", "must be a folder inside BERDL_HOME"),
    ("BERDL_VENV_DIR", "{home}/../other/venv", "must be a folder inside BERDL_HOME"),
    ("BERDL_VENV_PYTHON", "python3", "BERDL_VENV_PYTHON='python3': is not absolute"),
    ("BERDL_VENV_PYTHON", "/usr/bin", "BERDL_VENV_PYTHON='/usr/bin': no such executable file"),
    ("BERDL_VENV_PYTHON", "{home}/.bashrc", "BERDL_VENV_PYTHON='{home}/.bashrc': no such executable file"),
    ("BERDL_VENV_SYSTEM_SITE_PACKAGES", "2", "BERDL_VENV_SYSTEM_SITE_PACKAGES='2': Input should be a valid"),
    ("BERDL_FAVORITES", '[{"path": "/srv"}]', "BERDL_FAVORITES[0][name]"),
    ("BERDL_FAVORITES", '[{"path": "/srv", "name": ""}]', "BERDL_FAVORITES[0][name]=''"),
    ("BERDL_FAVORITES", '[{"path": "/srv", "name": "a", "x": 1}]', "BERDL_FAVORITES[0][x]: not a known key"),
    (
        "BERDL_FAVORITES",
        '[{"path": 5, "name": "a"}]',
        "BERDL_FAVORITES[0][path]='5': Input should be a valid",
    ),
    ("BERDL_FAVORITES", '[{"path": "/a\\u0000b", "name": "a"}]', "holds a NUL character"),
    ("BERDL_FAVORITES", "[" * 10_000 + "]" * 10_000, "BERDL_FAVORITES: nested too deeply"),
    ("BERDL_TEMPLATE_VARS", '{"a": ' * 5_000 + "1" + "}" * 5_000, "BERDL_TEMPLATE_VARS: nested too deeply"),
    ("BERDL_FAVORITES_ROOT", "", "BERDL_FAVORITES_ROOT='': must be an absolute path or ~/FOLDER"),
    ("BERDL_USER", "..", "BERDL_USER='..': is not a usable user name"),
]


@pytest.mark.parametrize(
    ("name", "value", "message"), BAD_SETTINGS, ids=[f"{n}={v[:30]}" for n, v, _ in BAD_SETTINGS]
)
def test_a_bad_setting_exits_2_with_one_line(
    tmp_path: Path, scratch: Path, name: str, value: str, message: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# not a python\n")
    before = tree(tmp_path, times=True)
    out, run = berdl(home, scratch, status=2, **{name: value.replace("{home}", str(home))})
    assert_one_line(run.stderr, "berdl-init: invalid settings: ", message.replace("{home}", str(home)))
    assert out["exit_status"] == 2
    assert message.replace("{home}", str(home)) in out["error"]
    assert diff(before, tree(tmp_path, times=True)) == []


CONFIGS = [
    ("uid = 'alice'\n", "BERDL_UID='alice': Input should be a valid integer"),
    ("home = 'relative'\n", "BERDL_HOME='relative': is not absolute"),
    ('home = "/a\\u0000b"\n', "holds a NUL character"),
    ("colour = 'blue'\n", "colour: unknown setting"),
    ("steps = 'dirs'\nsteps = 'venv'\n", "--config"),
    ("user = 'caf\xe9'\n".encode("latin-1"), "--config"),
    ("favorites = [{path = '/srv'}]\n", "BERDL_FAVORITES[0][name]"),
    ("favorites = " + "[" * 5_000 + "]" * 5_000 + "\n", "--config: nested too deeply"),
]


@pytest.mark.parametrize(("text", "message"), CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_a_bad_config_file_exits_2_with_one_line(
    tmp_path: Path, scratch: Path, text: str | bytes, message: str
) -> None:
    """The file is the only source of settings here (no --home, no BERDL_UID in the environment)."""
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "init.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = tree(tmp_path, times=True)
    _, run = berdl(None, scratch, "--config", str(config), status=2, BERDL_UID=None, BERDL_GID=None)
    assert_one_line(run.stderr, "berdl-init: invalid settings: ", message)
    assert diff(before, tree(tmp_path, times=True)) == []


def test_a_config_that_is_a_folder_exits_2(tmp_path: Path, scratch: Path) -> None:
    home = tmp_path / "home"
    _, run = berdl(home, scratch, "--config", str(tmp_path), status=2)
    assert_one_line(run.stderr, "berdl-init: invalid settings: ", "no such file")
    assert not home.exists()


# -- templates: exit 2, nothing changed, even a missing home is not created --------------------------

TEMPLATES = [
    (b"{% if %}\n", "template zshrc.j2, line 1:"),
    (b"{{ user }\n", "template zshrc.j2, line 1:"),
    (b"{{ nope }}\n", "template zshrc.j2: 'nope' is undefined"),
    (b"{{ user.nope.deeper }}\n", "template zshrc.j2:"),
    (b"{{ 1 // 0 }}\n", "template zshrc.j2: ZeroDivisionError"),
    (b'{{ "%d" % user }}\n', "template zshrc.j2: TypeError"),
    (b"{{ user | nosuchfilter }}\n", "template zshrc.j2, line 1: No filter named 'nosuchfilter'"),
    ("# caf\xe9\n".encode("latin-1"), "template zshrc.j2: not UTF-8 text"),
    (b"\xff\xfe#\x00 \x00", "template zshrc.j2: not UTF-8 text"),
]


@pytest.mark.parametrize(("source", "message"), TEMPLATES, ids=[str(i) for i in range(len(TEMPLATES))])
def test_a_broken_template_exits_2_before_any_change(
    tmp_path: Path, scratch: Path, source: bytes, message: str
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(PACKAGED_TEMPLATES, templates)
    (templates / "zshrc.j2").write_bytes(source)
    home = tmp_path / "home"
    before = tree(tmp_path, times=True)
    _, run = berdl(home, scratch, status=2, BERDL_TEMPLATES_DIR=str(templates))
    assert_one_line(run.stderr, "berdl-init: invalid settings: ", message)
    assert not home.exists()
    assert diff(before, tree(tmp_path, times=True)) == []


def test_a_broken_template_on_a_prepared_home_changes_nothing(tmp_path: Path, scratch: Path) -> None:
    """Once the lock exists the templates are rendered while planning: still before any change."""
    templates = tmp_path / "templates"
    shutil.copytree(PACKAGED_TEMPLATES, templates)
    home = tmp_path / "home"
    berdl(home, scratch, BERDL_TEMPLATES_DIR=str(templates), **NO_VENV)
    (templates / "bashrc.j2").write_bytes(b"# new\n{{ 1 // 0 }}\n")
    before = tree(tmp_path, times=True)
    _, run = berdl(home, scratch, status=2, BERDL_TEMPLATES_DIR=str(templates), **NO_VENV)
    assert_one_line(run.stderr, "berdl-init: invalid settings: ", "ZeroDivisionError")
    assert diff(before, tree(tmp_path, times=True)) == []


# -- files in the home: exit 0, a warning, the file left as it is ------------------------------------


def favorites_at(home: Path) -> Path:
    path = home / FAVORITES_REL
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def json5_of_size(size: int) -> bytes:
    """JupyterLab-style JSON5 (a comment, a trailing comma) of at least `size` bytes."""
    entries = []
    total = 0
    while total < size:
        entry = json.dumps({"root": "/", "path": f"data/{len(entries)}", "name": f"n{len(entries)}"})
        entries.append(entry)
        total += len(entry) + 10
    return ('{\n    // Favorites\n    "favorites": [\n' + ",\n".join(entries) + ",\n    ],\n}").encode()


HOME_FILES = [
    ("favorites-utf16", FAVORITES_REL, '{"favorites": []}'.encode("utf-16"), "not UTF-8 text"),
    ("favorites-latin1", FAVORITES_REL, '{"sortOrder": "caf\xe9"}'.encode("latin-1"), "not UTF-8 text"),
    ("favorites-deep", FAVORITES_REL, b'{"favorites": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeply"),
    ("favorites-json5-1MiB", FAVORITES_REL, json5_of_size(1024 * 1024), "bytes of JSON5, more than"),
    ("favorites-5MiB", FAVORITES_REL, b'{"favorites": []}' + b" " * BIG, "more than the 4194304 allowed"),
    ("favorites-nul", FAVORITES_REL, b'{"favorites": []}\x00', "cannot be read"),
    ("ledger-deep", LEDGER_REL, b"[" * 100_000 + b"]" * 100_000, "is not a ledger berdl-init wrote"),
    ("ledger-5MiB", LEDGER_REL, b"{}" + b" " * BIG, "more than the 4194304 allowed"),
    ("ledger-types", LEDGER_REL, b'{"format": 1, "files": {".bashrc": 1}}', "is not a ledger berdl-init"),
    ("ledger-binary", LEDGER_REL, bytes(range(256)), "is not a ledger berdl-init wrote"),
    (".bashrc-5MiB", ".bashrc", b"# mine\n" * (BIG // 7), "more than the 4194304 allowed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rel", "content", "message"), [c[1:] for c in HOME_FILES], ids=[c[0] for c in HOME_FILES]
)
def test_an_odd_file_in_the_home_is_left_as_it_is_with_a_warning(
    tmp_path: Path, scratch: Path, rel: str, content: bytes, message: str
) -> None:
    home = tmp_path / "home"
    path = home / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    report, run = berdl(home, scratch, **NO_VENV)
    assert "Traceback" not in run.stderr
    assert any(message in warning for warning in report["warnings"]), report["warnings"]
    assert report["ok"] is True
    if rel == LEDGER_REL:  # an unreadable ledger is replaced by a good one
        assert json.loads(path.read_bytes())["format"] == 1
    else:
        assert path.read_bytes() == content
    assert_nothing_half_done(home)
    again, _ = berdl(home, scratch, **NO_VENV)
    assert again["changes"] == []


def test_a_lone_surrogate_in_the_favorites_is_kept_and_the_file_stays_json(
    tmp_path: Path, scratch: Path
) -> None:
    home = tmp_path / "home"
    path = favorites_at(home)
    path.write_bytes(b'{"favorites": [{"root": "/", "path": "x\\ud800y", "name": "caf\xc3\xa9"}]}')
    report, run = berdl(home, scratch, **NO_VENV)
    assert report["ok"] is True, run.stderr
    written = json.loads(path.read_bytes())
    assert written["favorites"][0] == {"root": "/", "path": "x\ud800y", "name": "caf\xe9"}
    assert written["favorites"][1]["name"] == "Home"
    assert berdl(home, scratch, **NO_VENV)[0]["changes"] == []


def test_an_unreadable_dotfile_fails_its_step_only(shared_base: Path, user_python: Path) -> None:
    """Root's file, mode 000, in the user's home: the step fails with the reason; the others run."""
    home = shared_base / "home"
    home.mkdir()
    os.chown(home, UID, GID)
    (home / ".bashrc").write_bytes(b"root's\n")
    (home / ".bashrc").chmod(0)
    report, _ = berdl(home, shared_base / "tmp", python=user_python, **AS_USER, **NO_VENV)
    assert step_status(report, "dotfiles") == "failed"
    message = next(step["message"] for step in report["steps"] if step["name"] == "dotfiles")
    assert "Permission denied" in message
    assert step_status(report, "favorites") == "changed"
    assert (home / ".bashrc").read_bytes() == b"root's\n"
    berdl(home, shared_base / "tmp", "--strict", status=3, python=user_python, **AS_USER, **NO_VENV)


def test_unreadable_templates_exit_2(shared_base: Path, user_python: Path) -> None:
    templates = shared_base / "templates"
    shutil.copytree(PACKAGED_TEMPLATES, templates)
    templates.chmod(0o700)  # root's: the user cannot list it
    home = shared_base / "home"
    home.mkdir()
    os.chown(home, UID, GID)
    before = tree(home, times=True)
    settings = {**AS_USER, "BERDL_TEMPLATES_DIR": str(templates)}
    _, run = berdl(home, shared_base / "tmp", status=2, python=user_python, **settings)
    assert_one_line(run.stderr, "berdl-init: invalid settings: ", "cannot be read (Permission denied)")
    assert diff(before, tree(home, times=True)) == []


def test_a_home_the_user_cannot_open_exits_3(shared_base: Path, user_python: Path) -> None:
    home = shared_base / "home"
    home.mkdir(mode=0)
    home.chmod(0)
    os.chown(home, UID, GID)
    unset = {"BERDL_UID": None, "BERDL_GID": None}
    _, run = berdl(home, shared_base / "tmp", status=3, python=user_python, user=UID, **unset, **NO_VENV)
    assert_one_line(run.stderr, "berdl-init: ", "cannot be opened")
    assert list(home.iterdir()) == []


# -- venvs whose pyvenv.cfg lies --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built")
    home = root / "home"
    berdl(home, root / "tmp", "--only", "venv")
    return home


def _cfg_with(home: Path, key: str, value: str) -> bytes:
    lines = (home / VENV_REL / "pyvenv.cfg").read_text().splitlines()
    return (
        "\n".join(f"{key} = {value}" if line.startswith(f"{key} ") else line for line in lines) + "\n"
    ).encode()


#: The warning of every venv moved aside.
MOVED = "and rebuilt"

LIES = [
    ("version-banana", lambda h: _cfg_with(h, "version_info", "banana"), "aside", "built for Python banana"),
    ("version-older", lambda h: _cfg_with(h, "version_info", "3.1.4.final.0"), "aside", "for Python 3.1.4"),
    ("empty", lambda h: b"", "aside", MOVED),
    ("binary", lambda h: bytes(range(256)) * 4, "aside", MOVED),
    ("huge", lambda h: b"x = y\n" * (BIG // 6), "aside", "is not a virtualenv (no pyvenv.cfg)"),
    ("built-elsewhere", lambda h: _cfg_with(h, "base-executable", "/bin/sh"), "aside", "was built on /"),
    ("folder", None, "aside", "is not a virtualenv (no pyvenv.cfg)"),
    ("home-elsewhere", lambda h: _cfg_with(h, "home", "/nowhere/bin"), "kept", None),
    ("no-system-site", lambda h: _cfg_with(h, "include-system-site-packages", "no"), "kept", "does not see"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "outcome", "warning"), [c[1:] for c in LIES], ids=[c[0] for c in LIES])
def test_a_lying_pyvenv_cfg(built_home: Path, tmp_path: Path, scratch: Path, make, outcome, warning) -> None:
    """A venv is judged by its python and its pyvenv.cfg together; a lie costs a rebuild, never the venv."""
    home = tmp_path / "home"
    shutil.copytree(built_home, home, symlinks=True)
    venv = home / VENV_REL
    cfg = venv / "pyvenv.cfg"
    if make is None:
        cfg.unlink()
        cfg.mkdir()
    else:
        cfg.write_bytes(make(built_home))
    (venv / "marker.txt").write_text("the user's\n")
    old = tree(venv)

    report, run = berdl(home, scratch, "--only", "venv")
    assert "Traceback" not in run.stderr
    assert report["ok"] is True
    if warning is not None:
        assert any(warning in w for w in report["warnings"]), report["warnings"]
    asides = sorted(venv.parent.glob(f"{venv.name}.berdl-old-*"))
    if outcome == "aside":
        assert [c["action"] for c in report["changes"]] == ["move-aside", "build-venv", "restore-packages"]
        assert len(asides) == 1
        assert tree(asides[0]) == old
        assert (venv / "pyvenv.cfg").is_file()
        assert not (venv / "marker.txt").exists()
    else:
        assert report["changes"] == []
        assert asides == []
        assert tree(venv) == old
    assert_nothing_half_done(home)
    assert berdl(home, scratch, "--only", "venv")[0]["changes"] == []


# -- disks: full, out of inodes, read-only ----------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; its path."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_fails_steps_cleanly_and_a_rerun_completes(tmpfs, scratch: Path) -> None:
    disk = tmpfs("disk", "size=2m,mode=0755")
    home = disk / "home"
    home.mkdir()
    filler = fill(disk)

    report, run = berdl(home, scratch)
    assert "Traceback" not in run.stderr
    assert report["ok"] is False
    failed = [step for step in report["steps"] if step["status"] == "failed"]
    assert failed
    assert all("No space left on device" in step["message"] for step in failed), failed
    assert_nothing_half_done(home)
    for rel in (".bashrc", ".bash_profile", FAVORITES_REL):
        assert not (home / rel).exists() or (home / rel).stat().st_size > 0
    assert not (home / VENV_REL).exists()
    berdl(home, scratch, "--strict", status=3)

    filler.unlink()
    recovered, _ = berdl(home, scratch)
    assert recovered["ok"] is True
    home.rename(disk / "recovered")
    fresh, _ = berdl(home, scratch)
    assert fresh["ok"] is True
    assert diff(tree(home), tree(disk / "recovered")) == []


def test_a_disk_out_of_inodes_cannot_take_the_lock_exit_3(tmpfs, scratch: Path) -> None:
    disk = tmpfs("disk", "size=4m,nr_inodes=3,mode=0755")
    home = disk / "home"
    home.mkdir()
    _, run = berdl(home, scratch, status=3, **NO_VENV)
    assert_one_line(run.stderr, "berdl-init: ", "cannot open the lock")
    assert_nothing_half_done(home)


def test_a_read_only_disk_exits_3_and_changes_nothing(tmpfs, scratch: Path) -> None:
    disk = tmpfs("disk", "size=2m,mode=0755")
    home = disk / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# mine\n")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    before = tree(disk, times=True)
    _, run = berdl(home, scratch, status=3)
    assert_one_line(run.stderr, "berdl-init: ", "is not writable")
    assert diff(before, tree(disk, times=True)) == []
