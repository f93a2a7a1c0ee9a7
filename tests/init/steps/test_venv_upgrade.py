"""The venv across image upgrades, on real interpreters (pyenv's), through the real command line.

docker-stacks keeps the interpreter's path across an upgrade: BERDL_VENV_PYTHON is a fixed symlink here
(`image/bin/python3`), re-pointed from one pyenv version to another. The user's packages come from a
local folder of wheels (pip's --find-links, the stand-in for the pod's package index); pip reads no
configuration file of this machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localhub.tools import REPO
from localhub.wheels import build_wheel, module_wheel
from tests.conftest import require_tool, skip_or_fail
from tests.init.steps.test_venv import (
    TIMEOUT,
    VENV_REL,
    berdl,
    berdl_cmd,
    berdl_env,
    changes,
    py_eval,
    pyvenv_cfg,
    run,
    tree_digest,
    venv_of,
)

pytestmark = pytest.mark.slow

PYENV = Path("/root/.pyenv/versions")
NOT_RESTORED = "berdl-not-restored.txt"
DOCKERFILE = REPO / "Dockerfile.notebook"
NOTICE = REPO / "images/notebook/berdl-venv-notice.sh"


def pyenv(minor: str) -> Path:
    """pyenv's interpreter for Python `minor` (3.11, ...); the test cannot run without it."""
    found = sorted(PYENV.glob(f"{minor}.*/bin/python{minor}"))
    if not found:
        skip_or_fail(f"no pyenv Python {minor} under {PYENV}")
    return found[-1]


def point(link: Path, python: Path) -> None:
    """(Re-)point the image's fixed interpreter path at `python`, as an image upgrade does."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(python)


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """The "index": `fromindex` 1.0; `oldonly` 1.0 (Python < 3.12 only) and 2.0; `localwheel` is not in
    it, the user installed it from a file of their own."""
    folder = tmp_path / "index"
    module_wheel(folder, "fromindex", "1.0")
    module_wheel(folder, "oldonly", "1.0", requires_python="<3.12")
    module_wheel(folder, "oldonly", "2.0")
    return folder


def index_env(wheels: Path) -> dict[str, str]:
    return {"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}


def user_pip(tmp_path: Path, venv: Path, wheels: Path, *requirements: object) -> None:
    """The user's own `pip install` in their venv, from the index."""
    python = venv / "bin" / "python"
    options = ["--no-index", "--find-links", wheels, "--no-cache-dir", "--disable-pip-version-check"]
    run(tmp_path, python, "-m", "pip", "install", *options, *requirements)


def imports(tmp_path: Path, python: Path, module: str) -> str | None:
    """The VERSION of `module` as `python` imports it, or None when it cannot."""
    result = run(tmp_path, python, "-c", f"import {module}; print({module}.VERSION)", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def other_warnings(report: dict) -> list[str]:
    """The warnings besides the one of every venv here: pyenv's Python has no ipykernel for the kernel."""
    return [warning for warning in report["warnings"] if "ipykernel is not importable" not in warning]


def prepared_home(tmp_path: Path, wheels: Path, link: Path) -> Path:
    """A home whose venv, on `link`, holds fromindex 1.0, oldonly 1.0 and a local wheel."""
    home = tmp_path / "home"
    venv = venv_of(home)
    berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link))
    user_pip(tmp_path, venv, wheels, "fromindex==1.0", "oldonly==1.0")
    local = module_wheel(tmp_path / "mine", "localwheel", "1.0")
    user_pip(tmp_path, venv, wheels, local)
    return home


def home_after_minor_upgrade(tmp_path: Path, wheels: Path) -> tuple[Path, Path]:
    """prepared_home() on 3.11, then the image's interpreter path moved to 3.12: (home, that path)."""
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.11"))
    home = prepared_home(tmp_path, wheels, link)
    point(link, pyenv("3.12"))
    return home, link


def test_a_patch_release_keeps_the_venv_and_its_packages(tmp_path: Path, wheels: Path) -> None:
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.11"))
    home = prepared_home(tmp_path, wheels, link)
    venv = venv_of(home)
    # The venv as an image one patch release older built it.
    cfg = venv / "pyvenv.cfg"
    major, minor, micro = pyvenv_cfg(venv)["version_info"].split(".")[:3]
    older = f"{major}.{minor}.{int(micro) - 1}"
    cfg.write_text(re.sub(r"(?m)^version_info = .*$", f"version_info = {older}.final.0", cfg.read_text()))
    before = tree_digest(venv)

    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link))

    assert report["changes"] == []
    assert other_warnings(report) == []
    assert tree_digest(venv) == before
    assert list(venv.parent.glob("*berdl-old*")) == []
    python = venv / "bin" / "python"
    assert imports(tmp_path, python, "fromindex") == "1.0"
    assert imports(tmp_path, python, "localwheel") == "1.0"


def test_a_minor_release_rebuilds_and_installs_the_users_packages_again(tmp_path: Path, wheels: Path) -> None:
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.11"))
    home = prepared_home(tmp_path, wheels, link)
    venv = venv_of(home)
    # A distribution named as one the new image provides (pyenv's 3.12 has pip): the image's wins. Its
    # wheel holds no module of that name, so the old venv's pip (the image's) keeps working.
    provided = build_wheel(tmp_path / "mine", "pip", "1.0", {"berdl_test_not_pip.py": b""})
    user_pip(tmp_path, venv, wheels, provided)
    old_tree = tree_digest(venv)

    point(link, pyenv("3.12"))
    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **index_env(wheels))

    assert [(action, path) for _, action, path in changes(report)] == [
        ("move-aside", VENV_REL),
        ("build-venv", VENV_REL),
        ("restore-packages", VENV_REL),
    ]
    (aside,) = venv.parent.glob(f"{venv.name}.berdl-old-*")
    assert tree_digest(aside) == old_tree
    python = venv / "bin" / "python"
    assert py_eval(tmp_path, python, "'%d.%d' % __import__('sys').version_info[:2]") == "3.12"
    assert imports(tmp_path, python, "fromindex") == "1.0"
    assert imports(tmp_path, python, "oldonly") == "2.0"  # 1.0 does not install on 3.12
    assert imports(tmp_path, python, "localwheel") is None
    assert not (venv / "berdl-restore-pending.json").exists()

    warnings = "\n".join(report["warnings"])
    assert "venv: oldonly 1.0 does not install on Python 3.12: 2.0 was installed instead" in warnings
    assert "not installed again: localwheel 1.0 (installed from the file" in warnings
    assert "fromindex" not in warnings
    assert "pip 1.0" not in warnings  # the image provides pip: never attempted, never listed
    text = (venv / NOT_RESTORED).read_text()
    assert re.search(
        r"(?m)^#   localwheel 1\.0: installed from the file .*localwheel-1\.0-py3-none-any\.whl", text
    )
    assert "oldonly" not in text
    assert "fromindex" not in text

    # The file's last line is the one command that finishes the job.
    command = text.splitlines()[-1]
    assert command.startswith(f"{python} -m pip install ")
    finish = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert finish.returncode == 0, finish.stderr
    assert imports(tmp_path, python, "localwheel") == "1.0"

    again = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **index_env(wheels))
    assert again["changes"] == []
    assert other_warnings(again) == []


def test_without_an_index_every_package_is_listed_and_the_run_succeeds(tmp_path: Path, wheels: Path) -> None:
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.11"))
    home = prepared_home(tmp_path, wheels, link)
    venv = venv_of(home)
    point(link, pyenv("3.13"))
    empty = tmp_path / "empty-index"
    empty.mkdir()

    report = berdl(
        home, tmp_path, "--only", "venv", "--strict", BERDL_VENV_PYTHON=str(link), **index_env(empty)
    )

    assert report["ok"] is True
    text = (venv / NOT_RESTORED).read_text()
    for name in ("fromindex 1.0", "oldonly 1.0", "localwheel 1.0"):
        assert f"#   {name}: " in text
    assert re.search(r"(?m)^#   fromindex 1\.0: ERROR: .*fromindex", text)
    arguments = shlex.split(text.splitlines()[-1])[4:]  # after PYTHON -m pip install
    assert arguments == [str(tmp_path / "mine/localwheel-1.0-py3-none-any.whl"), "fromindex", "oldonly"]


def test_the_restore_can_be_turned_off(tmp_path: Path, wheels: Path) -> None:
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.11"))
    home = prepared_home(tmp_path, wheels, link)
    point(link, pyenv("3.10"))

    report = berdl(
        home,
        tmp_path,
        "--only",
        "venv",
        BERDL_VENV_PYTHON=str(link),
        BERDL_VENV_RESTORE="false",
        **index_env(wheels),
    )

    assert [action for _, action, _ in changes(report)] == ["move-aside", "build-venv"]
    assert imports(tmp_path, venv_of(home) / "bin" / "python", "fromindex") is None
    assert not (venv_of(home) / NOT_RESTORED).exists()


def test_a_restore_out_of_time_lists_the_rest_and_the_run_succeeds(tmp_path: Path, wheels: Path) -> None:
    """A package index that takes connections and never answers: the deadline ends the restore."""
    home, link = home_after_minor_upgrade(tmp_path, wheels)

    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts: the kernel's backlog
        report = berdl(
            home,
            tmp_path,
            "--only",
            "venv",
            "--strict",
            BERDL_VENV_PYTHON=str(link),
            BERDL_VENV_RESTORE_TIMEOUT="3",
            PIP_CONFIG_FILE="/dev/null",
            PIP_INDEX_URL=f"http://127.0.0.1:{silent.getsockname()[1]}/simple",
            PIP_TIMEOUT="600",
        )

    assert report["ok"] is True
    text = (venv_of(home) / NOT_RESTORED).read_text()
    assert "#   fromindex 1.0: out of time (BERDL_VENV_RESTORE_TIMEOUT)" in text


def bashrc_line() -> str:
    """The line Dockerfile.notebook appends to /etc/bash.bashrc."""
    match = re.search(r"^RUN echo '(.+)' >> /etc/bash\.bashrc$", DOCKERFILE.read_text(), flags=re.M)
    assert match, "Dockerfile.notebook no longer appends the notice to /etc/bash.bashrc"
    return match.group(1)


@pytest.mark.parametrize("login", [False, True], ids=["bash -i", "bash -il"])
@pytest.mark.parametrize("bashrc", ["berdl-init's", "the user's own"])
def test_an_interactive_bash_mentions_what_was_not_restored(tmp_path: Path, login: bool, bashrc: str) -> None:
    """Debian's bash, reading an /etc/bash.bashrc made as Dockerfile.notebook makes it (bind-mounted over
    the real one, in a mount namespace of its own)."""
    require_tool("unshare")
    home = tmp_path / "home"
    berdl(home, tmp_path, "--skip", "venv")
    if bashrc == "the user's own":
        (home / ".bashrc").write_text("PS1='$ '\n")
    venv = venv_of(home)
    venv.mkdir(parents=True)
    system_rc = tmp_path / "bash.bashrc"
    system_rc.write_text(
        Path("/etc/bash.bashrc").read_text()
        + bashrc_line().replace("/etc/berdl-venv-notice.sh", str(NOTICE))
        + "\n"
    )

    def start_bash() -> str:
        flags = "-il" if login else "-i"
        script = f"mount --bind {system_rc} /etc/bash.bashrc && exec bash {flags} -c true"
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "JUPYTERHUB_USER": "alice", "TERM": "dumb"}
        result = subprocess.run(
            ["unshare", "--mount", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        if "mount" in result.stderr and result.returncode != 0:
            skip_or_fail(f"no private mount namespace here: {result.stderr.strip()}")
        return result.stderr

    assert "berdl-init:" not in start_bash()
    (venv / NOT_RESTORED).write_text("# ...\n")
    notices = [line for line in start_bash().splitlines() if line.startswith("berdl-init:")]
    missing = "berdl-init: packages of your venv from before the image upgrade are missing"
    assert notices == [f"{missing}; see {venv}/{NOT_RESTORED}"]
    (venv / NOT_RESTORED).unlink()
    assert "berdl-init:" not in start_bash()
    shutil.rmtree(venv)


def pip_children(pid: int) -> list[int]:
    """The processes whose parent is `pid` and that run `-m pip install` (the restore's pip)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == pid and b"pip" in command and b"install" in command:
            found.append(int(entry.name))
    return found


def kill_while_pip_runs(tmp_path: Path, home: Path, link: Path) -> None:
    """Run berdl-init and SIGKILL its whole process group (as when the pod goes) while the restore's pip
    waits for an index that never answers."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        env = berdl_env(
            tmp_path,
            BERDL_VENV_PYTHON=str(link),
            PIP_CONFIG_FILE="/dev/null",
            PIP_INDEX_URL=f"http://127.0.0.1:{silent.getsockname()[1]}/simple",
            PIP_TIMEOUT="600",
        )
        child = subprocess.Popen(
            berdl_cmd(home, "--only", "venv"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            for _ in range(TIMEOUT * 10):  # a bound against a hang, not a timed assertion
                if pip_children(child.pid) or child.poll() is not None:
                    break
                time.sleep(0.1)
            assert pip_children(child.pid), "the restore's pip never started"
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=TIMEOUT)


def test_a_restore_killed_while_pip_runs_is_finished_by_the_next_run(tmp_path: Path, wheels: Path) -> None:
    """Killed once while pip runs; the next run, with an index that answers, finishes the restore."""
    home, link = home_after_minor_upgrade(tmp_path, wheels)
    venv = venv_of(home)

    kill_while_pip_runs(tmp_path, home, link)

    assert (venv / "berdl-restore-pending.json").is_file()
    assert imports(tmp_path, venv / "bin" / "python", "fromindex") is None
    pending = berdl(home, tmp_path, "--check", "--only", "venv", status=1, BERDL_VENV_PYTHON=str(link))
    assert [action for _, action, _ in changes(pending)] == ["restore-packages"]

    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **index_env(wheels))

    assert [action for _, action, _ in changes(report)] == ["restore-packages"]
    assert imports(tmp_path, venv / "bin" / "python", "fromindex") == "1.0"
    assert imports(tmp_path, venv / "bin" / "python", "oldonly") == "2.0"
    assert not (venv / "berdl-restore-pending.json").exists()
    assert "localwheel 1.0" in (venv / NOT_RESTORED).read_text()
    assert len(list(venv.parent.glob(f"{venv.name}.berdl-old-*"))) == 1


def test_a_restore_killed_twice_is_listed_not_run_again(tmp_path: Path, wheels: Path) -> None:
    """A restore that kills the pod each time it runs (pip over the memory limit, or filling the home)
    must not keep the server from starting: after two killed attempts, the third run only lists what is
    missing."""
    home, link = home_after_minor_upgrade(tmp_path, wheels)
    venv = venv_of(home)

    kill_while_pip_runs(tmp_path, home, link)
    kill_while_pip_runs(tmp_path, home, link)  # the first kill's restore, run again, killed again

    # An index that answers, and a pip log: a pip started here would install fromindex and write the log.
    pip_log = tmp_path / "pip.log"
    env = {"BERDL_VENV_PYTHON": str(link), "PIP_LOG": str(pip_log), **index_env(wheels)}
    report = berdl(home, tmp_path, "--only", "venv", "--strict", **env)

    assert report["ok"] is True
    assert [action for _, action, _ in changes(report)] == ["restore-packages"]
    assert not pip_log.exists()
    python = venv / "bin" / "python"
    assert imports(tmp_path, python, "fromindex") is None
    assert not (venv / "berdl-restore-pending.json").exists()
    (aside,) = venv.parent.glob(f"{venv.name}.berdl-old-*")
    assert not (aside / "berdl-restore-pending.json").exists()
    warnings = "\n".join(report["warnings"])
    assert "was interrupted 2 times" in warnings
    text = (venv / NOT_RESTORED).read_text()
    assert "#   fromindex 1.0: not attempted again: its restore was interrupted 2 times" in text
    assert "#   oldonly 1.0: not attempted again" in text
    arguments = shlex.split(text.splitlines()[-1])[4:]  # after PYTHON -m pip install
    assert arguments == [str(tmp_path / "mine/localwheel-1.0-py3-none-any.whl"), "fromindex", "oldonly"]

    again = berdl(home, tmp_path, "--only", "venv", **env)
    assert again["changes"] == []
    assert (venv / NOT_RESTORED).is_file()  # the user's to act on, and to delete


def test_a_run_with_nothing_to_do_imports_no_heavy_library(tmp_path: Path) -> None:
    """The restore's libraries (packaging) are imported only by a restore, as Jinja2, virtualenv and json5
    only when something is to be rendered, built or merged."""
    home = tmp_path / "home"
    berdl(home, tmp_path)
    code = (
        "import sys\n"
        "from berdl_init.cli import main\n"
        "try:\n"
        f"    main(['--home', {str(home)!r}, '--json'])\n"
        "except SystemExit as end:\n"
        "    assert not end.code, end.code\n"
        "heavy = ('jinja2', 'virtualenv', 'json5', 'packaging', 'berdl_init.restore')\n"
        "print('imported:', *(name for name in heavy if name in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=berdl_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["changes"] == []
    assert result.stderr.splitlines()[-1] == "imported:"
