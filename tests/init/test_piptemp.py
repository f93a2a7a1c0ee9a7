"""The restore's pip unpacks and builds in ~/.local/state/berdl-init/tmp, not in the pod's small /tmp.

What pip saw is recorded by a package of the "index" that is an sdist with an in-tree build backend:
pip unpacks it and runs the backend in its temporary folder, and the backend writes down
tempfile.gettempdir() and its working folder. Real pip, real interpreters (pyenv's), the real command line.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from localhub.wheels import module_wheel
from tests.init.steps.test_venv import berdl, changes, venv_of
from tests.init.steps.test_venv_upgrade import (
    imports,
    index_env,
    kill_while_pip_runs,
    point,
    prepared_home,
    pyenv,
    user_pip,
)

pytestmark = pytest.mark.slow

PIP_TMP = ".local/state/berdl-init/tmp"

#: The build backend of the sdist `seestmp`: it records where it runs, then hands pip the prebuilt wheel
#: named by SEESTMP_WHEEL, or fails when there is none.
BACKEND = b"""
import json, os, shutil, tempfile

def _record():
    with open(os.environ["SEESTMP_RECORD"], "a") as record:
        record.write(json.dumps({"tmp": tempfile.gettempdir(), "cwd": os.getcwd()}) + "\\n")

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _record()
    wheel = os.environ.get("SEESTMP_WHEEL")
    if not wheel:
        raise RuntimeError("seestmp: no wheel to hand over (SEESTMP_WHEEL)")
    shutil.copy(wheel, wheel_directory)
    return os.path.basename(wheel)
"""


def sdist(dest: Path, name: str, version: str) -> Path:
    """`{name}-{version}.tar.gz`: PKG-INFO, a pyproject.toml naming the in-tree backend, and the backend."""
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        "pyproject.toml": b'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": BACKEND,
    }
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{name}-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


@pytest.fixture
def index(tmp_path: Path) -> Path:
    """The "index": what prepared_home() installs, as wheels, and `seestmp` 1.0 as an sdist."""
    folder = tmp_path / "index"
    module_wheel(folder, "fromindex", "1.0")
    module_wheel(folder, "oldonly", "1.0", requires_python="<3.12")
    module_wheel(folder, "oldonly", "2.0")
    sdist(folder, "seestmp", "1.0")
    return folder


def upgraded_home(tmp_path: Path, index: Path, wheel: Path) -> tuple[Path, Path, dict[str, str]]:
    """A home whose 3.11 venv holds fromindex and seestmp, after the image moved to 3.12: (home, the
    image's interpreter path, the environment in which seestmp's backend records and builds)."""
    link = tmp_path / "image/bin/python3"
    point(link, pyenv("3.11"))
    record = tmp_path / "seen.jsonl"
    env = {"SEESTMP_RECORD": str(record), "SEESTMP_WHEEL": str(wheel)}
    home = prepared_home(tmp_path, index, link)
    user_pip(tmp_path, venv_of(home), wheel.parent, "seestmp==1.0")  # the wheel, from a "find-links"
    point(link, pyenv("3.12"))
    return home, link, env


def seen(env: dict[str, str]) -> list[dict[str, str]]:
    return [json.loads(line) for line in Path(env["SEESTMP_RECORD"]).read_text().splitlines()]


def test_pip_unpacks_and_builds_in_the_home_and_leaves_nothing_there(tmp_path: Path, index: Path) -> None:
    wheel = module_wheel(tmp_path / "built", "seestmp", "1.0")
    home, link, env = upgraded_home(tmp_path, index, wheel)

    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **env, **index_env(index))

    assert "restore-packages" in [action for _, action, _ in changes(report)]
    tmp = home / PIP_TMP
    builds = seen(env)  # one per pip run: all at once, then one by one (oldonly 1.0 needs Python < 3.12)
    assert builds
    for build in builds:
        assert build["tmp"] == str(tmp)
        assert Path(build["cwd"]).is_relative_to(tmp)  # the sdist was unpacked there
    assert imports(tmp_path, venv_of(home) / "bin" / "python", "seestmp") == "1.0"
    assert not tmp.exists()
    assert oct((home / PIP_TMP).parent.stat().st_mode & 0o777) == "0o700"


def test_a_failing_build_leaves_nothing_in_the_home(tmp_path: Path, index: Path) -> None:
    wheel = module_wheel(tmp_path / "built", "seestmp", "1.0")
    home, link, env = upgraded_home(tmp_path, index, wheel)
    env.pop("SEESTMP_WHEEL")  # the backend now fails after recording

    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **env, **index_env(index))

    builds = seen(env)
    assert builds
    assert all(build["tmp"] == str(home / PIP_TMP) for build in builds)
    assert "seestmp 1.0" in "\n".join(report["warnings"])
    assert imports(tmp_path, venv_of(home) / "bin" / "python", "fromindex") == "1.0"
    assert not (home / PIP_TMP).exists()


def test_a_symlink_planted_at_the_folder_is_not_followed(tmp_path: Path, index: Path) -> None:
    wheel = module_wheel(tmp_path / "built", "seestmp", "1.0")
    home, link, env = upgraded_home(tmp_path, index, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_bytes(b"not berdl-init's\n")
    (home / PIP_TMP).symlink_to(elsewhere)

    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **env, **index_env(index))

    assert sorted(path.name for path in elsewhere.iterdir()) == ["keep"]
    assert (elsewhere / "keep").read_bytes() == b"not berdl-init's\n"
    builds = seen(env)
    assert builds
    assert all(Path(build["cwd"]).is_relative_to(home / PIP_TMP) for build in builds)
    assert not (home / PIP_TMP).is_symlink()
    assert not (home / PIP_TMP).exists()
    assert imports(tmp_path, venv_of(home) / "bin" / "python", "seestmp") == "1.0"
    assert report["ok"] is True


def test_a_symlink_on_the_way_sends_pip_to_tmp_with_a_warning(tmp_path: Path, index: Path) -> None:
    wheel = module_wheel(tmp_path / "built", "seestmp", "1.0")
    home, link, env = upgraded_home(tmp_path, index, wheel)
    state = home / ".local/state/berdl-init"
    elsewhere = tmp_path / "elsewhere"
    state.rename(elsewhere)
    state.symlink_to(elsewhere)
    before = sorted(path.name for path in elsewhere.iterdir())

    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **env, **index_env(index))

    assert sorted(path.name for path in elsewhere.iterdir()) == before
    builds = seen(env)
    assert builds
    assert not any(Path(build["cwd"]).is_relative_to(home) for build in builds)
    assert f"~/{PIP_TMP} cannot be made" in "\n".join(report["warnings"])
    assert imports(tmp_path, venv_of(home) / "bin" / "python", "seestmp") == "1.0"


def test_what_a_killed_restore_left_is_removed_by_the_next_run(tmp_path: Path, index: Path) -> None:
    wheel = module_wheel(tmp_path / "built", "seestmp", "1.0")
    home, link, env = upgraded_home(tmp_path, index, wheel)

    kill_while_pip_runs(tmp_path, home, link)
    tmp = home / PIP_TMP
    assert tmp.is_dir()  # pip was killed in it
    (tmp / "left-by-pip").mkdir(exist_ok=True)
    (tmp / "left-by-pip/part.whl").write_bytes(b"half a download")

    berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(link), **env, **index_env(index))

    assert not tmp.exists()
    assert imports(tmp_path, venv_of(home) / "bin" / "python", "seestmp") == "1.0"
