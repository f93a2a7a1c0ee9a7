"""The venv step on a real disk, through the real command line (`python -m berdl_init`).

We run as root here and the temporary home is root's, so every run sets BERDL_UID=0 BERDL_GID=0.
pip always runs with --no-index: the machine's pip.conf adds find-links and extra indexes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from berdl_init.venvbuild import pip_launcher
from localhub.wheels import FAKE_LOGOS, fake_ipykernel_wheel, module_wheel
from tests.conftest import skip_or_fail
from tests.environment import child_env
from tests.snapshots import snapshot

pytestmark = pytest.mark.slow

USER = "alice"
VENV_REL = f".virtualenvs/envs/{USER}_default_env"
KERNEL_DIR = ".jupyter/data/kernels/python3"
#: berdl-init's default BERDL_VENV_PYTHON when it runs on this interpreter (see settings.base_interpreter).
BASE = Path(getattr(sys, "_base_executable", None) or sys.executable)
#: Generous bounds against a hung child; no test asserts on time.
TIMEOUT = 300


# -- running things ------------------------------------------------------------------------------


def berdl_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return child_env(tmp_path / "scratch", BERDL_UID="0", BERDL_GID="0", BERDL_USER=USER, **extra)


def berdl_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "berdl_init", "--home", str(home), "--json", *args]


def berdl(home: Path, tmp_path: Path, *args: str, status: int = 0, **env: str) -> dict:
    """Run berdl-init with --json; check its exit status and return its report."""
    result = subprocess.run(
        berdl_cmd(home, *args),
        env=berdl_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == status, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout)
    assert report["home"] == str(home)
    return report


def run(tmp_path: Path, *cmd: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in cmd],
        env=child_env(tmp_path / "scratch"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"{cmd}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def py_eval(tmp_path: Path, python: Path, expression: str) -> str:
    return run(tmp_path, python, "-c", f"print({expression})").stdout.strip()


def pip_install(tmp_path: Path, launcher: list[object], wheel: Path) -> None:
    run(tmp_path, *launcher, "install", "--no-index", "--no-deps", "--no-cache-dir", wheel)


# -- looking at the result -----------------------------------------------------------------------


def venv_of(home: Path) -> Path:
    return home / VENV_REL


def build_dir_of(venv: Path) -> Path:
    return venv.parent / f".{venv.name}.berdl-tmp"


def purelib(tmp_path: Path, python: Path) -> Path:
    return Path(py_eval(tmp_path, python, "__import__('sysconfig').get_paths()['purelib']"))


def pyvenv_cfg(venv: Path) -> dict[str, str]:
    values = {}
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def tree_digest(root: Path) -> dict[str, str]:
    """Each entry under root: a symlink's target, a file's sha256, or 'dir'."""
    digest = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            digest[rel] = "dir"
        else:
            digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def changes(report: dict, step: str | None = None) -> list[tuple[str, str, str]]:
    return [(c["step"], c["action"], c["path"]) for c in report["changes"] if step in (None, c["step"])]


def step_status(report: dict, name: str) -> str:
    return next(step["status"] for step in report["steps"] if step["name"] == name)


def assert_no_build_path(venv: Path) -> None:
    """No file under the venv names its temporary build folder."""
    for path in venv.rglob("*"):
        if path.is_symlink():
            assert "berdl-tmp" not in os.readlink(path), path
        elif path.is_file():
            assert b"berdl-tmp" not in path.read_bytes(), path


def assert_working_venv(tmp_path: Path, venv: Path, base: Path = BASE) -> None:
    """The venv's python runs, as a venv at `venv` on the base interpreter `base`."""
    python = venv / "bin" / "python"
    assert py_eval(tmp_path, python, "__import__('sys').prefix") == str(venv)
    assert os.path.realpath(python) == os.path.realpath(base)
    base_prefix = py_eval(tmp_path, base, "__import__('sys').base_prefix")
    assert py_eval(tmp_path, python, "__import__('sys').base_prefix") == base_prefix


def assert_no_leftovers(home: Path) -> None:
    leftovers = [p for p in home.rglob("*") if "berdl-tmp" in p.name]
    assert leftovers == []


def other_base_interpreter() -> Path | None:
    """A real base interpreter other than BASE (not a venv's, not a shim script), if the machine has one."""
    candidates = ["/usr/bin/python3", "/usr/local/bin/python3", "/opt/conda/bin/python3"]
    for candidate in candidates:
        path = Path(candidate)
        if not path.is_file() or os.path.realpath(path) == os.path.realpath(BASE):
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.prefix == sys.base_prefix)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return path
    return None


# -- the tests -----------------------------------------------------------------------------------


def test_cold_run_builds_a_working_venv_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)

    pending = berdl(home, tmp_path, "--check", status=1)
    assert ("venv", "build-venv", VENV_REL) in changes(pending)
    assert not home.exists(), "--check must change nothing"

    report = berdl(home, tmp_path)
    assert report["ok"] is True
    assert changes(report, "venv") == [("venv", "build-venv", VENV_REL)]
    assert step_status(report, "venv") == "changed"
    assert any("ipykernel is not importable" in warning for warning in report["warnings"])
    assert not (home / KERNEL_DIR).exists()

    assert_working_venv(tmp_path, venv)
    cfg = pyvenv_cfg(venv)
    assert cfg["include-system-site-packages"] == "true"
    assert cfg["version"] == ".".join(map(str, sys.version_info[:3]))

    # System site packages: no pip in the venv; the image's pip serves, through launchers.
    site = purelib(tmp_path, venv / "bin" / "python")
    assert site.is_relative_to(venv)
    assert not (site / "pip").exists()
    assert [p.name for p in site.glob("pip-*")] == []
    for command in ("pip", "pip3"):
        assert (venv / "bin" / command).read_bytes() == pip_launcher()
        assert stat.S_IMODE((venv / "bin" / command).stat().st_mode) == 0o755
    assert run(tmp_path, venv / "bin" / "pip", "--version").stdout.startswith("pip ")
    assert run(tmp_path, venv / "bin" / "python", "-m", "pip", "--version").stdout.startswith("pip ")

    # Built under a temporary name, renamed: nothing names the temporary folder.
    assert_no_build_path(venv)
    assert_no_leftovers(home)
    activated = run(
        tmp_path,
        "bash",
        "-c",
        'source "$1" && printf "%s\\n" "$VIRTUAL_ENV" && command -v python && command -v pip',
        "bash",
        venv / "bin" / "activate",
    ).stdout.split("\n")
    assert activated[:3] == [str(venv), str(venv / "bin" / "python"), str(venv / "bin" / "pip")]

    before = snapshot(home, ctime=True)
    again = berdl(home, tmp_path)
    assert again["changes"] == []
    assert step_status(again, "venv") == "ok"
    assert berdl(home, tmp_path, "--check", status=0)["changes"] == []
    assert snapshot(home, ctime=True) == before


def test_pip_installs_into_the_venv_not_the_base(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)
    berdl(home, tmp_path, "--only", "venv")
    python = venv / "bin" / "python"
    site = purelib(tmp_path, python)
    base_site = purelib(tmp_path, BASE)
    assert site != base_site

    wheels = tmp_path / "wheels"
    ways = {"berdl_tiny_bare": [venv / "bin" / "pip"], "berdl_tiny_module": [python, "-m", "pip"]}
    for name, launcher in ways.items():
        pip_install(tmp_path, launcher, module_wheel(wheels, name))

    for name in ways:
        assert (site / name / "__init__.py").read_text().startswith(f"MARKER = {name!r}\n")
        assert list(site.glob(f"{name}-1.0.dist-info")) != []
        assert not (base_site / name).exists()
        where = py_eval(tmp_path, python, f"__import__({name!r}).__file__")
        assert Path(where).is_relative_to(venv)
        missing = run(tmp_path, BASE, "-c", f"import {name}", check=False)
        assert missing.returncode != 0
        assert "ModuleNotFoundError" in missing.stderr


def test_kernelspec_appears_once_ipykernel_is_in_the_venv(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)
    first = berdl(home, tmp_path, "--only", "venv")
    assert any("ipykernel is not importable" in warning for warning in first["warnings"])
    assert not (home / KERNEL_DIR).exists()

    pip_install(tmp_path, [venv / "bin" / "python", "-m", "pip"], fake_ipykernel_wheel(tmp_path / "wheels"))

    second = berdl(home, tmp_path, "--only", "venv")
    assert sorted(changes(second)) == sorted(
        ("venv", "write", f"{KERNEL_DIR}/{name}") for name in ["kernel.json", *FAKE_LOGOS]
    )
    assert second["warnings"] == []
    spec = json.loads((home / KERNEL_DIR / "kernel.json").read_text())
    assert spec["argv"][0] == str(venv / "bin" / "python")
    assert spec["argv"][1:3] == ["-m", "ipykernel_launcher"]
    assert spec["language"] == "python"
    resources = purelib(tmp_path, venv / "bin" / "python") / "ipykernel" / "resources"
    for name, data in FAKE_LOGOS.items():
        assert (home / KERNEL_DIR / name).read_bytes() == data
        assert (resources / name).read_bytes() == data

    before = snapshot(home, ctime=True)
    third = berdl(home, tmp_path, "--only", "venv")
    assert third["changes"] == []
    assert third["warnings"] == []
    assert berdl(home, tmp_path, "--only", "venv", "--check", status=0)["changes"] == []
    assert snapshot(home, ctime=True) == before


def _other_version(version: str) -> str:
    """Another minor release (a patch release keeps the venv: tests/init/steps/test_venv_upgrade.py)."""
    major, minor, micro = (int(part) for part in version.split(".")[:3])
    return f"{major}.{minor - 1 if minor else minor + 1}.{micro}"


def test_venv_whose_pyvenv_cfg_names_another_version_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)
    berdl(home, tmp_path, "--only", "venv")
    (venv / "marker.txt").write_text("the user's\n")
    cfg = (venv / "pyvenv.cfg").read_text()
    actual = pyvenv_cfg(venv)["version"]
    lie = _other_version(actual)
    cfg = re.sub(r"^version_info = .*$", f"version_info = {lie}.final.0", cfg, flags=re.M)
    cfg = re.sub(r"^version = .*$", f"version = {lie}", cfg, flags=re.M)
    (venv / "pyvenv.cfg").write_text(cfg)
    old_tree = tree_digest(venv)

    report = berdl(home, tmp_path, "--only", "venv")
    assert [(action, path) for _, action, path in changes(report)] == [
        ("move-aside", VENV_REL),
        ("build-venv", VENV_REL),
        ("restore-packages", VENV_REL),
    ]
    asides = list(venv.parent.glob(f"{venv.name}.berdl-old-*"))
    assert len(asides) == 1
    aside = asides[0]
    aside_rel = aside.relative_to(home).as_posix()
    assert any(f"~/{aside_rel}" in warning for warning in report["warnings"])
    assert f"~/{aside_rel}" in report["changes"][0]["detail"]
    assert tree_digest(aside) == old_tree
    assert (aside / "marker.txt").read_text() == "the user's\n"

    assert not (venv / "marker.txt").exists()
    assert pyvenv_cfg(venv)["version"] == actual
    assert_working_venv(tmp_path, venv)
    assert_no_leftovers(home)
    assert berdl(home, tmp_path, "--only", "venv")["changes"] == []


def test_venv_follows_a_new_base_interpreter(tmp_path: Path) -> None:
    other = other_base_interpreter()
    if other is None:
        skip_or_fail(f"no base interpreter other than {BASE} on this machine")
    home = tmp_path / "home"
    venv = venv_of(home)
    berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(BASE))
    (venv / "marker.txt").write_text("the user's\n")
    old_tree = tree_digest(venv)

    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(other))
    assert [(action, path) for _, action, path in changes(report)] == [
        ("move-aside", VENV_REL),
        ("build-venv", VENV_REL),
        ("restore-packages", VENV_REL),
    ]
    assert str(other) in report["changes"][1]["detail"]
    (aside,) = venv.parent.glob(f"{venv.name}.berdl-old-*")
    assert any(f"~/{aside.relative_to(home).as_posix()}" in warning for warning in report["warnings"])
    assert tree_digest(aside) == old_tree
    assert os.path.realpath(aside / "bin" / "python") == os.path.realpath(BASE)

    assert_working_venv(tmp_path, venv, base=other)
    other_version = py_eval(tmp_path, other, "'%d.%d.%d' % __import__('sys').version_info[:3]")
    assert pyvenv_cfg(venv)["version"] == other_version
    assert not (venv / "marker.txt").exists()
    assert berdl(home, tmp_path, "--only", "venv", BERDL_VENV_PYTHON=str(other))["changes"] == []


def _stdlib_venv(tmp_path: Path, venv: Path, *options: str, system_site_packages: bool = True) -> None:
    venv.parent.mkdir(parents=True)
    flags = ["--system-site-packages"] if system_site_packages else []
    run(tmp_path, BASE, "-m", "venv", *flags, *options, venv)
    (venv / "marker.txt").write_text("the user's\n")


def test_stdlib_venv_without_pip_is_kept_and_gets_pip_launchers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)
    _stdlib_venv(tmp_path, venv, "--without-pip")
    cfg = (venv / "pyvenv.cfg").read_bytes()
    assert not (venv / "bin" / "pip").exists()

    report = berdl(home, tmp_path, "--only", "venv")
    assert sorted(changes(report)) == [
        ("venv", "write", f"{VENV_REL}/bin/pip"),
        ("venv", "write", f"{VENV_REL}/bin/pip3"),
    ]
    assert (venv / "pyvenv.cfg").read_bytes() == cfg
    assert (venv / "marker.txt").exists()
    assert list(venv.parent.glob("*berdl-old*")) == []
    for command in ("pip", "pip3"):
        assert (venv / "bin" / command).read_bytes() == pip_launcher()
    assert run(tmp_path, venv / "bin" / "pip", "--version").stdout.startswith("pip ")
    assert berdl(home, tmp_path, "--only", "venv")["changes"] == []


def test_stdlib_venv_with_its_own_pip_is_left_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)
    _stdlib_venv(tmp_path, venv)
    scripts = sorted((venv / "bin").glob("pip*"))
    assert {p.name for p in scripts} >= {"pip", "pip3"}
    before = snapshot(venv, ctime=True)
    contents = {p.name: p.read_bytes() for p in scripts}

    report = berdl(home, tmp_path, "--only", "venv")
    assert report["changes"] == []
    assert step_status(report, "venv") == "ok"
    assert list(venv.parent.glob("*berdl-old*")) == []
    assert {p.name: p.read_bytes() for p in sorted((venv / "bin").glob("pip*"))} == contents
    assert snapshot(venv, ctime=True) == before


def test_without_system_site_packages_the_venv_seeds_its_own_pip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)
    offline = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "PIP_NO_INDEX": "1"}
    report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_SYSTEM_SITE_PACKAGES="false", **offline)
    assert changes(report, "venv") == [("venv", "build-venv", VENV_REL)]
    assert "isolated" in report["changes"][-1]["detail"]

    assert pyvenv_cfg(venv)["include-system-site-packages"] == "false"
    assert_working_venv(tmp_path, venv)
    site = purelib(tmp_path, venv / "bin" / "python")
    assert (site / "pip" / "__init__.py").is_file()
    pip_script = (venv / "bin" / "pip").read_bytes()
    assert pip_script != pip_launcher()
    assert pip_script.startswith(f"#!{venv}/bin/python".encode())
    version = run(tmp_path, venv / "bin" / "pip", "--version").stdout
    assert f"from {site / 'pip'}" in version
    assert_no_build_path(venv)
    assert_no_leftovers(home)

    pip_install(tmp_path, [venv / "bin" / "pip"], module_wheel(tmp_path / "wheels", "berdl_tiny_isolated"))
    assert (site / "berdl_tiny_isolated" / "__init__.py").is_file()
    assert berdl(home, tmp_path, "--only", "venv", BERDL_VENV_SYSTEM_SITE_PACKAGES="false")["changes"] == []


def test_a_run_killed_while_building_leaves_no_half_venv(tmp_path: Path) -> None:
    """SIGKILL while the venv is built under its temporary name: the real name is all or nothing."""
    rng = random.Random(1729)
    # The isolated build (pip is seeded) keeps its temporary folder for a good fraction of a second;
    # the default one for a few milliseconds.
    trials = [("false", 0.0)] + [("false", rng.uniform(0.0, 0.3)) for _ in range(3)]
    trials.append(("true", rng.uniform(0.0, 0.004)))
    cut_short = 0
    for number, (system_site, delay) in enumerate(trials):
        home = tmp_path / f"home{number}"
        venv = venv_of(home)
        build = build_dir_of(venv)
        env = berdl_env(tmp_path, BERDL_VENV_SYSTEM_SITE_PACKAGES=system_site)
        child = subprocess.Popen(
            berdl_cmd(home, "--only", "venv"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: virtualenv's helpers die with it
        )
        try:
            while child.poll() is None and not build.exists():
                time.sleep(0.0005)
            time.sleep(delay)
            with contextlib.suppress(ProcessLookupError):  # it finished first
                os.killpg(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=TIMEOUT)

        if venv.exists():
            assert (venv / "pyvenv.cfg").is_file(), f"trial {number}: half a venv under the real name"
            assert_working_venv(tmp_path, venv)
            if system_site == "false":
                run(tmp_path, venv / "bin" / "python", "-m", "pip", "--version")
        else:
            cut_short += 1

        report = berdl(home, tmp_path, "--only", "venv", BERDL_VENV_SYSTEM_SITE_PACKAGES=system_site)
        assert report["ok"] is True
        assert_working_venv(tmp_path, venv)
        assert_no_leftovers(home)
        assert_no_build_path(venv)
    assert cut_short >= 1, "no kill landed while the venv was being built"


def test_a_failing_virtualenv_fails_the_venv_step_only(tmp_path: Path) -> None:
    """virtualenv raises RuntimeError and the like: the step is reported failed, the run goes on."""
    not_python = tmp_path / "image" / "bin" / "python3"
    not_python.parent.mkdir(parents=True)
    not_python.write_text("#!/bin/sh\necho 'not a python' >&2\nexit 1\n")
    not_python.chmod(0o755)
    home = tmp_path / "home"
    venv = venv_of(home)

    report = berdl(home, tmp_path, BERDL_VENV_PYTHON=str(not_python))
    assert report["ok"] is False
    assert step_status(report, "venv") == "failed"
    venv_step = next(step for step in report["steps"] if step["name"] == "venv")
    assert "virtualenv failed" in venv_step["message"]
    assert changes(report, "venv") == []
    assert step_status(report, "favorites") == "changed"  # the steps after it still ran
    assert not venv.exists()
    assert_no_leftovers(home)

    strict = berdl(home, tmp_path, "--only", "venv", "--strict", status=3, BERDL_VENV_PYTHON=str(not_python))
    assert strict["ok"] is False
    assert_no_leftovers(home)


def test_virtualenv_settings_of_the_caller_do_not_change_the_venv(tmp_path: Path) -> None:
    """VIRTUALENV_* variables and the caller's virtualenv.ini asking for copies are ignored: a venv whose
    python is a copy would not be recognised as built on the interpreter, and be rebuilt at every run."""
    home = tmp_path / "home"
    config = home / ".config" / "virtualenv" / "virtualenv.ini"
    config.parent.mkdir(parents=True)
    config.write_text("[virtualenv]\ncopies = true\n")
    env = {"VIRTUALENV_COPIES": "1", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    venv = venv_of(home)

    berdl(home, tmp_path, "--only", "venv", **env)
    assert (venv / "bin" / "python").is_symlink()
    assert_working_venv(tmp_path, venv)
    again = berdl(home, tmp_path, "--only", "venv", **env)
    assert again["changes"] == []
    assert list(venv.parent.glob("*berdl-old*")) == []


def test_an_isolated_legacy_venv_is_kept_with_a_warning_and_no_launcher(tmp_path: Path) -> None:
    """The replaced spawner built venvs without system site packages; the user's packages are in them."""
    home = tmp_path / "home"
    venv = venv_of(home)
    _stdlib_venv(tmp_path, venv, "--without-pip", system_site_packages=False)
    before = snapshot(venv, ctime=True)

    report = berdl(home, tmp_path, "--only", "venv")

    assert report["changes"] == []
    assert snapshot(venv, ctime=True) == before
    assert not (venv / "bin" / "pip").exists()  # the image's pip cannot run in a venv that does not see it
    assert any(
        "does not see the image's packages, unlike BERDL_VENV_SYSTEM_SITE_PACKAGES=true" in warning
        for warning in report["warnings"]
    )


def test_a_rebuild_that_loses_ipykernel_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)
    berdl(home, tmp_path, "--only", "venv")
    pip_install(tmp_path, [venv / "bin" / "python", "-m", "pip"], fake_ipykernel_wheel(tmp_path / "wheels"))
    assert berdl(home, tmp_path, "--only", "venv")["warnings"] == []
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(re.sub(r"(?m)^version_info = .*$", "version_info = 3.0.0.final.0", cfg.read_text()))

    report = berdl(home, tmp_path, "--only", "venv")

    assert [change["action"] for change in report["changes"]] == [
        "move-aside",
        "build-venv",
        "restore-packages",
    ]
    assert any("so the python3 kernel cannot run in it" in warning for warning in report["warnings"])
    # Installed from a wheel file, not from an index: listed, not attempted.
    assert any("not installed again: ipykernel 0.0.1" in warning for warning in report["warnings"])


def test_an_app_data_folder_prepared_by_the_image_is_only_read(tmp_path: Path) -> None:
    """The init image prepares virtualenv's app data when it is built; at spawn time it is read-only."""
    app_data = tmp_path / "image-app-data"
    prepared = tmp_path / "prepared-venv"
    command = [sys.executable, "-m", "virtualenv", "-q", "--app-data", app_data, "--python", BASE]
    run(tmp_path, *command, "--system-site-packages", "--no-seed", prepared)
    before = snapshot(app_data, ctime=True)
    home = tmp_path / "home"

    report = berdl(home, tmp_path, "--only", "venv", VIRTUALENV_OVERRIDE_APP_DATA=str(app_data))

    assert changes(report, "venv") == [("venv", "build-venv", VENV_REL)]
    assert_working_venv(tmp_path, venv_of(home))
    assert snapshot(app_data, ctime=True) == before


def test_a_venv_with_a_copied_python_on_the_same_interpreter_is_kept(tmp_path: Path) -> None:
    """venv.create() in Python code copies the interpreter (symlinks=False), as the replaced spawner did."""
    home = tmp_path / "home"
    venv = venv_of(home)
    venv.parent.mkdir(parents=True)
    code = f"import venv; venv.create({str(venv)!r}, system_site_packages=True, with_pip=False)"
    run(tmp_path, BASE, "-c", code)
    assert not (venv / "bin" / "python").is_symlink()
    (venv / "marker.txt").write_text("the user's\n")

    report = berdl(home, tmp_path, "--only", "venv")

    assert [action for _, action, _ in changes(report)] == ["write", "write"]  # the two pip launchers
    assert (venv / "marker.txt").exists()
    assert list(venv.parent.glob("*berdl-old*")) == []
    assert berdl(home, tmp_path, "--only", "venv")["changes"] == []


def test_a_copied_python_that_does_not_run_is_moved_aside(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = venv_of(home)
    venv.parent.mkdir(parents=True)
    run(tmp_path, BASE, "-c", f"import venv; venv.create({str(venv)!r}, system_site_packages=True)")
    python = venv / "bin" / "python"
    real = Path(os.path.realpath(python))
    real.unlink()
    real.write_text("#!/bin/sh\nexit 1\n")
    real.chmod(0o755)

    report = berdl(home, tmp_path, "--only", "venv")

    assert [action for _, action, _ in changes(report)][:2] == ["move-aside", "build-venv"]
    assert any("does not run as the interpreter does" in warning for warning in report["warnings"])
