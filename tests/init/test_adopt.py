"""Taking over a home BERDL's production hub left (tests/production_home.py), on the real disk, through the
real command line, with pyenv's interpreters as the images' Pythons.

Production's image ran Python 3.12 and its hub set PIP_USER=1: the user's packages are in
~/.local/lib/python3.12/site-packages. Two cases: this project's image on the same minor Python (the venv,
which sees the system site packages, reads that user site as it is) and on another (the packages are
installed again into the venv from the package index: here a local folder of wheels, pip's find-links).
In both, every file of the home stays byte for byte as it was (mode, owner, mtime) except the favorites,
merged; the report and new terminals say in one line what changed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from berdl_init.adopt import NOTE
from localhub.wheels import module_wheel
from tests.conftest import require_tool, skip_or_fail
from tests.environment import child_env
from tests.init.steps.test_venv import TIMEOUT, VENV_REL, berdl, changes
from tests.init.steps.test_venv_upgrade import (
    NOTICE,
    bashrc_line,
    index_env,
    kill_while_pip_runs,
    point,
    pyenv,
)
from tests.production_home import BASH_PROFILE, FAVORITES, STARTUP, favorites, write_production_home
from tests.snapshots import lost, snapshot

pytestmark = pytest.mark.slow

USER = "alice"
USER_SITE_NOT_RESTORED = "berdl-not-restored-user-site.txt"


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """The index: `fromindex` 1.0; `oldonly` 1.0 (Python < 3.13 only) and 2.0."""
    folder = tmp_path / "index"
    module_wheel(folder, "fromindex", "1.0")
    module_wheel(folder, "oldonly", "1.0", requires_python="<3.13")
    module_wheel(folder, "oldonly", "2.0")
    return folder


def user_env(tmp_path: Path, home: Path, **extra: str) -> dict[str, str]:
    """The notebook's environment for what matters here: the user's HOME (so the user site is theirs)."""
    return child_env(tmp_path / "scratch", HOME=str(home), **extra)


def pip_install_user(tmp_path: Path, home: Path, python: Path, wheels: Path, *requirements: object) -> None:
    """`pip install --user`, as production's users ran it (PIP_USER=1), with production's Python."""
    options = [
        "--user",
        "--no-index",
        "--find-links",
        str(wheels),
        "--no-cache-dir",
        "--no-warn-script-location",
    ]
    result = subprocess.run(
        [str(python), "-m", "pip", "install", *options, *map(str, requirements)],
        env=user_env(tmp_path, home, PIP_CONFIG_FILE="/dev/null"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def kernel_import(tmp_path: Path, home: Path, module: str) -> tuple[str, str] | None:
    """(VERSION, the file) of `module` as the kernel imports it: the kernelspec's python, the venv's, run
    with the user's HOME; None when it cannot."""
    python = home / VENV_REL / "bin" / "python"
    code = f"import {module} as m; print(m.VERSION); print(m.__file__)"
    result = subprocess.run(
        [str(python), "-c", code], env=user_env(tmp_path, home), capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        return None
    version, where = result.stdout.split()
    return version, where


def production_home(tmp_path: Path, wheels: Path) -> Path:
    """alice's production home: its files, and packages she installed with `pip install --user` on Python
    3.12, one from the index and one from a wheel of her own."""
    home = tmp_path / "home"
    write_production_home(home, USER)
    python = pyenv("3.12")
    pip_install_user(tmp_path, home, python, wheels, "fromindex==1.0", "oldonly==1.0")
    pip_install_user(tmp_path, home, python, wheels, module_wheel(tmp_path / "mine", "localwheel", "1.0"))
    return home


def adopt_line(report: dict) -> str:
    (line,) = [w.removeprefix("adopt: ") for w in report["warnings"] if w.startswith("adopt: ")]
    return line


def assert_kept(home: Path, before: dict) -> None:
    """Every file as it was, byte for byte, but the favorites, which keep every entry and key."""
    assert lost(before, snapshot(home), merged={FAVORITES}) == []
    after = json.loads((home / FAVORITES).read_text())
    production = favorites(USER)
    assert after["showWidget"] is True
    assert after["favorites"][: len(production["favorites"])] == production["favorites"]
    assert [entry["name"] for entry in after["favorites"][len(production["favorites"]) :]] == ["Home"]
    assert (home / ".bash_profile").read_text() == BASH_PROFILE
    assert "written by berdl-init" in (home / ".bash_profile.berdl-new").read_text()


def notices(tmp_path: Path, home: Path) -> list[str]:
    """The berdl-init lines an interactive login bash prints (JupyterLab's terminals are login shells),
    with an /etc/bash.bashrc made as Dockerfile.notebook makes it, in a mount namespace of its own."""
    require_tool("unshare")
    system_rc = tmp_path / "bash.bashrc"
    system_rc.write_text(
        Path("/etc/bash.bashrc").read_text()
        + bashrc_line().replace("/etc/berdl-venv-notice.sh", str(NOTICE))
        + "\n"
    )
    script = f"mount --bind {system_rc} /etc/bash.bashrc && exec bash -il -c true"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "JUPYTERHUB_USER": USER, "TERM": "dumb"}
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    if "mount" in result.stderr and result.returncode != 0:
        skip_or_fail(f"no private mount namespace here: {result.stderr.strip()}")
    return [line for line in result.stderr.splitlines() if line.startswith("berdl-init:")]


def test_on_the_same_minor_python_the_user_packages_import_as_they_are(tmp_path: Path, wheels: Path) -> None:
    home = production_home(tmp_path, wheels)
    before = snapshot(home)
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.12"))

    preview = berdl(home, tmp_path, "--dry-run", BERDL_VENV_PYTHON=str(link), **index_env(wheels))
    report = berdl(home, tmp_path, BERDL_VENV_PYTHON=str(link), **index_env(wheels))

    assert changes(preview) == changes(report)  # the dry run shows the note too
    assert ("adopt", "write", NOTE) in changes(report)
    assert_kept(home, before)
    assert not [c for c in changes(report) if c[1] == "restore-packages"]
    site = home / ".local/lib/python3.12/site-packages"
    for module in ("fromindex", "oldonly", "localwheel"):
        found = kernel_import(tmp_path, home, module)
        assert found is not None, module
        assert Path(found[1]).is_relative_to(site), found
    line = adopt_line(report)
    assert line == (
        "your home was set up for this notebook and kept as it was: your ~/.bash_profile stays "
        "(berdl-init's: ~/.bash_profile.berdl-new); your `pip install --user` packages (Python 3.12, "
        "~/.local/lib/python3.12/site-packages) import in the notebook's venv as they are; your JupyterLab "
        "favorites stay, Home added"
    )
    assert (home / NOTE).read_text().splitlines()[0] == line
    assert (
        f"~/{STARTUP} holds start-up scripts (00-notebookutils.py, 01-minio-credentials.py)"
        in (home / NOTE).read_text()
    )
    assert notices(tmp_path, home) == [f"berdl-init: {line} (more: ~/{NOTE})"]

    # The next start is an ordinary one: nothing to do, no note again.
    after_first = snapshot(home)
    again = berdl(home, tmp_path, BERDL_VENV_PYTHON=str(link), **index_env(wheels))
    assert again["changes"] == []
    assert not any(w.startswith("adopt: ") for w in again["warnings"])
    assert lost(after_first, snapshot(home), merged=set()) == []


def test_on_another_minor_python_they_are_installed_again_into_the_venv(tmp_path: Path, wheels: Path) -> None:
    home = production_home(tmp_path, wheels)
    before = snapshot(home)
    user_site = home / ".local/lib/python3.12/site-packages"
    user_site_before = snapshot(user_site)
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.13"))

    report = berdl(home, tmp_path, BERDL_VENV_PYTHON=str(link), **index_env(wheels))

    assert_kept(home, before)
    assert snapshot(user_site) == user_site_before  # nothing moved, removed or added there, not even a mark
    assert ("venv", "restore-packages", VENV_REL) in changes(report)
    venv_site = home / VENV_REL / "lib/python3.13/site-packages"
    assert kernel_import(tmp_path, home, "fromindex") == ("1.0", str(venv_site / "fromindex/__init__.py"))
    assert kernel_import(tmp_path, home, "oldonly") == ("2.0", str(venv_site / "oldonly/__init__.py"))
    assert kernel_import(tmp_path, home, "localwheel") is None

    warnings = "\n".join(report["warnings"])
    assert (
        f"venv: 2 package(s) of ~/.local/lib/python3.12/site-packages installed again in ~/{VENV_REL}"
        in warnings
    )
    assert "venv: oldonly 1.0 does not install on Python 3.13: 2.0 was installed instead" in warnings
    assert "not installed again: localwheel 1.0 (installed from the file" in warnings
    line = adopt_line(report)
    assert line == (
        "your home was set up for this notebook and kept as it was: your ~/.bash_profile stays "
        "(berdl-init's: ~/.bash_profile.berdl-new); your `pip install --user` packages of Python 3.12 "
        "(~/.local/lib/python3.12/site-packages) are installed again, where the package index has them, into "
        f"the notebook's venv ~/{VENV_REL} "
        "(Python 3.13); your JupyterLab favorites stay, Home added"
    )

    # What could not be installed again is listed, with the one command that does it.
    listed = home / VENV_REL / USER_SITE_NOT_RESTORED
    text = listed.read_text()
    assert "#   localwheel 1.0: installed from the file" in text
    assert "fromindex" not in text
    assert "oldonly" not in text
    command = text.splitlines()[-1]
    assert shlex.split(command)[:4] == [str(home / VENV_REL / "bin/python"), "-m", "pip", "install"]
    assert notices(tmp_path, home) == [
        f"berdl-init: {line} (more: ~/{NOTE})",
        "berdl-init: packages you installed with pip install --user on another Python are missing from your "
        f"venv; see {home / VENV_REL / USER_SITE_NOT_RESTORED}",
    ]
    finish = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert finish.returncode == 0, finish.stderr
    assert kernel_import(tmp_path, home, "localwheel") == ("1.0", str(venv_site / "localwheel/__init__.py"))

    # Installed again once: the next start restores nothing, and the venv's packages stay.
    listed.unlink()
    again = berdl(home, tmp_path, BERDL_VENV_PYTHON=str(link), **index_env(wheels))
    assert again["changes"] == []
    assert not any(w.startswith("adopt: ") for w in again["warnings"])
    assert json.loads((home / ".local/state/berdl-init/ledger.json").read_text())["user_sites"] == {
        ".local/lib/python3.12/site-packages": "3.13"
    }


def test_a_user_site_behind_a_symlink_is_not_read(tmp_path: Path, wheels: Path) -> None:
    """The user's ~/.local/lib points elsewhere (planted, or their own): nothing is read or installed
    through it, and nothing is written there."""
    outside = tmp_path / "outside"
    pip_install_user(tmp_path, outside, pyenv("3.12"), wheels, "fromindex==1.0")
    home = tmp_path / "home"
    write_production_home(home, USER)
    (home / ".local").mkdir()
    (home / ".local/lib").symlink_to(outside / ".local/lib")
    outside_before = snapshot(outside)
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.13"))

    report = berdl(home, tmp_path, BERDL_VENV_PYTHON=str(link), **index_env(wheels))

    assert ("venv", "restore-packages", VENV_REL) not in changes(report)
    assert kernel_import(tmp_path, home, "fromindex") is None
    assert lost(outside_before, snapshot(outside), merged=set()) == []
    assert snapshot(outside).keys() == outside_before.keys()


def test_a_user_site_restore_killed_while_pip_runs_is_finished_once_by_the_next_run(
    tmp_path: Path, wheels: Path
) -> None:
    """The pod goes while pip installs her packages again: the venv's mark says from where, and the next
    start installs them, once, and records it."""
    home = production_home(tmp_path, wheels)
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.13"))

    kill_while_pip_runs(tmp_path, home, link)

    pending = json.loads((home / VENV_REL / "berdl-restore-pending.json").read_text())
    assert pending == {"from": ".local/lib/python3.12/site-packages", "attempts": 1}
    assert kernel_import(tmp_path, home, "fromindex") is None
    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **index_env(wheels))
    assert changes(report, "venv") == [("venv", "restore-packages", VENV_REL)]
    assert kernel_import(tmp_path, home, "fromindex") == (
        "1.0",
        str(home / VENV_REL / "lib/python3.13/site-packages/fromindex/__init__.py"),
    )
    assert not (home / VENV_REL / "berdl-restore-pending.json").exists()
    again = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **index_env(wheels))
    assert changes(again, "venv") == []
