"""The spawner's pod, run for real: `podman kube play` of BERDLSpawner.get_pod_manifest() with the images
built from Dockerfile.init and Dockerfile.notebook (on the local stand-in base, see images/).

Two homes: a new one (the hostPath does not exist; podman creates it root:root, as a kubelet does) and a
legacy one (a hand-edited .bashrc, a venv made by the system this project replaces, a favorites file
written by JupyterLab, the user's own files). For each: the initContainer ran berdl-init, which fixed the
home folder as root and did everything else as the user; the home holds what the design promises; in the
notebook container the venv's python runs, `pip install` lands in the venv and the default kernel runs in
the venv; a second play of the same pod changes nothing in the home.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import json5
import pytest
from berdl_hub import credentials
from berdl_hub.manifest import INIT_CONTAINER_NAME

from localhub.podman import NOTEBOOK_IMAGE, Podman
from localhub.wheels import module_wheel
from tests.images.manifests import container_named, for_podman, podman_name, spawner_pod_and_credentials
from tests.snapshots import Entry, differences, lost, snapshot

pytestmark = pytest.mark.slow

UID, GID = 1000, 100  # the spawner's defaults: docker-stacks' jovyan
FAVORITES = ".jupyter/lab/user-settings/@jlab-enhanced/favorites/favorites.jupyterlab-settings"
KERNEL_DIR = ".jupyter/data/kernels/python3"


@dataclass
class PodRun:
    """One user's pod, played from the spawner's manifest, and what each play's berdl-init reported."""

    podman: Podman
    user: str
    home: Path
    manifest: Path
    pod: dict[str, Any]
    #: What the server's credentials Secret holds, played as a podman secret of the same name.
    credentials: dict[str, str] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    #: The home before the first play (the legacy home only).
    before: dict[str, Entry] = field(default_factory=dict)

    @property
    def notebook(self) -> str:
        return podman_name(self.pod, "notebook")

    @property
    def init(self) -> str:
        return podman_name(self.pod, INIT_CONTAINER_NAME)

    @property
    def home_in_pod(self) -> str:
        return container_named(self.pod, "notebook")["workingDir"]

    @property
    def venv_rel(self) -> str:
        return f".virtualenvs/envs/{self.user}_default_env"

    @property
    def venv_in_pod(self) -> str:
        return f"{self.home_in_pod}/{self.venv_rel}"

    def init_env(self) -> dict[str, str]:
        init = container_named(self.pod, INIT_CONTAINER_NAME, init=True)
        return {e["name"]: e["value"] for e in init["env"]}

    @property
    def secret(self) -> str:
        return credentials.secret_name(self.pod["metadata"]["name"])

    def down(self) -> None:
        self.podman.down(self.manifest)
        self.podman.remove_secret(self.secret)

    def play(self) -> dict[str, Any]:
        """(Re)start the pod: its initContainer runs again on the same home. Returns berdl-init's report."""
        self.podman.down(self.manifest)
        started = time.monotonic()
        self.podman.play(self.manifest)
        self.podman.seconds[f"play {self.user} #{len(self.reports) + 1}"] = time.monotonic() - started
        stdout, stderr = self.podman.logs(self.init)
        report = json.loads(stdout)  # --json: one object on stdout, the human lines on stderr
        assert "changes made" in stderr
        self.reports.append(report)
        return report

    def run(self, *command: str) -> str:
        return self.podman.exec(self.notebook, *command).stdout

    def run_python(self, python: str, code: str) -> Any:
        """Run `code` (which prints one JSON value) with `python` in the notebook container."""
        return json.loads(self.run(python, "-c", textwrap.dedent(code)).strip().splitlines()[-1])


def _start(podman: Podman, user: str, folder: Path, home: Path) -> PodRun:
    pod, values = spawner_pod_and_credentials(user)
    pod = for_podman(pod, home=home)
    manifest = folder / "pod.json"
    manifest.write_text(json.dumps(pod, indent=1))
    podman.remove_pod(pod["metadata"]["name"])  # what a killed earlier run may have left
    run = PodRun(podman, user, home, manifest, pod, credentials=values)
    podman.create_secret(run.secret, values, folder)
    return run


@pytest.fixture(scope="module")
def fresh(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodRun]:
    """alice's first start: her home folder does not exist yet."""
    folder = tmp_path_factory.mktemp("fresh")
    run = _start(podman, "alice", folder, folder / "homes" / "alice")
    try:
        run.play()
        yield run
    finally:
        run.down()


# --- the legacy home -------------------------------------------------------------------------------

# The .bashrc the replaced system copied into homes (it activated the venv), then edited by its user.
LEGACY_BASHRC = b"""\
# .bashrc copied by the BERDL hub
source ~/.virtualenvs/envs/bob_default_env/bin/activate
# bob's own additions, by hand, over the years
export EDITOR=vim
alias ll='ls -l'
"""

# What JupyterLab writes: comments above each key, 4-space indent, trailing commas, no final newline.
LEGACY_FAVORITES = """\
{
    // Favorites
    // @jlab-enhanced/favorites:favorites
    // Favorites settings.
    // ****************************************

    // Favorites
    // The list of favorites.
    "favorites": [
        {
            "root": "/home/bob",
            "path": "projects",
            "contentType": "directory",
            "iconLabel": "ui-components:folder",
            "name": "projects",
        },
    ],

    // Show Widget
    // Show the favorites widget in the file browser.
    "showWidget": true,
}"""

# A venv on the image's interpreter, seeing the image's packages, with pip, as the system this project
# replaces made them; then the user installed a package of their own into it. It links its python, as
# `python -m venv` does on Linux: venv.create()'s default, a copy, is the subject of
# test_a_legacy_venv_with_a_copied_python_is_kept below.
LEGACY_VENV = """
import subprocess, sys, venv
target = sys.argv[1]
venv.create(target, system_site_packages=True, with_pip=True, symlinks=sys.argv[3] == "symlinks")
subprocess.run([target + "/bin/pip", "install", "--no-index", "--quiet", sys.argv[2]], check=True)
"""


def _make_legacy_venv(podman: Podman, run: PodRun, wheels: Path, *, copies: bool) -> None:
    """The venv, made as the user in a container of the notebook image (the interpreter the pod runs)."""
    wheel = module_wheel(wheels, f"{run.user}s_own_package")
    podman(
        "run", "--rm", "--user", f"{UID}:{GID}",
        "--volume", f"{run.home}:{run.home_in_pod}", "--volume", f"{wheels}:/wheels:ro",
        NOTEBOOK_IMAGE, "python", "-c", LEGACY_VENV,
        run.venv_in_pod, f"/wheels/{wheel.name}", "copies" if copies else "symlinks",
        timeout=300,
    )  # fmt: skip


def _make_legacy_home(podman: Podman, run: PodRun, wheels: Path) -> None:
    home = run.home
    (home / "projects").mkdir(parents=True)
    (home / "projects" / "analysis.ipynb").write_text('{"cells": [], "nbformat": 4, "nbformat_minor": 5}\n')
    (home / ".bashrc").write_bytes(LEGACY_BASHRC)
    favorites = home / FAVORITES
    favorites.parent.mkdir(parents=True)
    favorites.write_text(LEGACY_FAVORITES)
    for folder, dirs, files in os.walk(home):
        for name in [".", *dirs, *files]:
            os.chown(Path(folder, name), UID, GID)
    _make_legacy_venv(podman, run, wheels, copies=False)


@pytest.fixture(scope="module")
def legacy(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodRun]:
    """bob's home from before berdl-init; `legacy.before` is its snapshot before the first play."""
    folder = tmp_path_factory.mktemp("legacy")
    run = _start(podman, "bob", folder, folder / "homes" / "bob")
    _make_legacy_home(podman, run, folder / "wheels")
    run.before = snapshot(run.home)
    try:
        run.play()
        yield run
    finally:
        run.down()


@pytest.fixture(params=["fresh", "legacy"])
def pod_run(request: pytest.FixtureRequest) -> PodRun:
    return request.getfixturevalue(request.param)


# --- both homes ------------------------------------------------------------------------------------


def test_init_container_ran_berdl_init_as_root_then_as_the_user(pod_run: PodRun) -> None:
    state = pod_run.podman.inspect(pod_run.init)["State"]
    assert state["ExitCode"] == 0
    report = pod_run.reports[0]
    assert report["ok"] is True
    assert report["home"] == pod_run.home_in_pod
    assert all(s["status"] in ("ok", "changed") for s in report["steps"]), report["steps"]
    # Everything in the home is the user's: made after berdl-init dropped from root to uid:gid, which
    # has no right to give anything away (all capabilities dropped but CHOWN, SETUID and SETGID).
    owners = {path: (e.uid, e.gid) for path, e in snapshot(pod_run.home).items()}
    assert {owner for owner in owners.values()} == {(UID, GID)}, owners


def test_the_home_holds_what_the_design_promises(pod_run: PodRun) -> None:
    home = pod_run.home
    for folder in (".jupyter", ".jupyter/data", ".jupyter/runtime"):
        assert (home / folder).is_dir()
    assert (home / ".jupyter/runtime").stat().st_mode & 0o777 == 0o700
    ledger = json.loads((home / ".local/state/berdl-init/ledger.json").read_text())
    assert (home / ".local/state/berdl-init/lock").is_file()
    for dotfile in (".bashrc", ".bash_profile"):
        assert (home / dotfile).is_file()

    cfg = (home / pod_run.venv_rel / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    assert os.path.islink(home / pod_run.venv_rel / "bin/python")

    spec = json.loads((home / KERNEL_DIR / "kernel.json").read_text())
    assert spec["argv"][:3] == [f"{pod_run.venv_in_pod}/bin/python", "-m", "ipykernel_launcher"]
    for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
        assert (home / KERNEL_DIR / logo).stat().st_size > 0
    assert f"{KERNEL_DIR}/kernel.json" in ledger["files"]

    favorites = json.loads((home / FAVORITES).read_text())  # strict JSON once berdl-init added to it
    root = pod_run.init_env()["BERDL_FAVORITES_ROOT"]
    added = [f for f in favorites["favorites"] if (f["root"], f["path"]) == (root, "")]
    assert added == [
        {
            "root": root,
            "path": "",
            "contentType": "directory",
            "iconLabel": "ui-components:folder",
            "name": "Home",
            "default": True,
        }
    ]


def test_the_venv_python_runs_on_the_image_interpreter(pod_run: PodRun) -> None:
    facts = pod_run.run_python(
        f"{pod_run.venv_in_pod}/bin/python",
        """
        import json, os, sys, jupyterlab_favorites
        print(json.dumps({"prefix": sys.prefix, "base": sys.base_prefix,
                          "real": os.path.realpath(sys.executable),
                          "image_package": jupyterlab_favorites.__file__}))
        """,
    )
    image = pod_run.run_python(
        "python", "import json, os, sys; print(json.dumps(os.path.realpath(sys.executable)))"
    )
    assert facts["prefix"] == pod_run.venv_in_pod
    assert facts["base"] != facts["prefix"]
    assert facts["real"] == image  # built on the interpreter the notebook image runs
    assert not facts["image_package"].startswith(pod_run.venv_in_pod)  # the image's packages are seen


def test_pip_install_in_a_terminal_lands_in_the_venv(pod_run: PodRun, tmp_path: Path) -> None:
    package = f"berdl_probe_{pod_run.user}"
    wheel = module_wheel(tmp_path, package)
    pod_run.podman.copy_in(wheel, pod_run.notebook, f"/tmp/{wheel.name}")
    # An interactive bash, as a JupyterLab terminal starts: ~/.bashrc activates the venv, then bare pip.
    out = pod_run.run("bash", "-i", "-c", f"command -v pip && pip install --no-index /tmp/{wheel.name}")
    assert out.splitlines()[0] == f"{pod_run.venv_in_pod}/bin/pip"
    installed = pod_run.home / pod_run.venv_rel / "lib"
    found = list(installed.glob(f"python3*/site-packages/{package}/__init__.py"))
    assert len(found) == 1, out
    assert (found[0].stat().st_uid, found[0].stat().st_gid) == (UID, GID)


KERNEL_PROBE = """
import json
from jupyter_client.manager import start_new_kernel

manager, client = start_new_kernel(startup_timeout=120)  # the default kernel: python3
printed = []
try:
    reply = client.execute_interactive(
        "import sys; print(sys.prefix)",
        output_hook=lambda m: printed.append(m["content"].get("text", "")),
        timeout=120,
    )
finally:
    client.stop_channels()
    manager.shutdown_kernel(now=True)
print(json.dumps({"name": manager.kernel_name, "argv": manager.kernel_spec.argv,
                  "status": reply["content"]["status"], "prefix": "".join(printed).strip()}))
"""


def test_the_default_kernel_runs_in_the_venv(pod_run: PodRun) -> None:
    specs = json.loads(pod_run.run("jupyter", "kernelspec", "list", "--json"))["kernelspecs"]
    assert specs["python3"]["resource_dir"] == f"{pod_run.home_in_pod}/{KERNEL_DIR}"
    kernel = pod_run.run_python("python", KERNEL_PROBE)
    assert kernel["status"] == "ok"
    assert kernel["name"] == "python3"
    assert kernel["prefix"] == pod_run.venv_in_pod


def test_a_second_play_changes_nothing_in_the_home(pod_run: PodRun) -> None:
    before = snapshot(pod_run.home)
    report = pod_run.play()
    assert differences(before, snapshot(pod_run.home)) == []
    assert report["changes"] == []
    assert report["ok"] is True


# --- the new home ----------------------------------------------------------------------------------


def test_a_new_home_is_created_by_the_node_and_given_to_the_user(fresh: PodRun) -> None:
    first = fresh.reports[0]
    home_fix = [c for c in first["changes"] if c["step"] == "home"]
    # podman, like a kubelet, made the hostPath (DirectoryOrCreate) as root:root; berdl-init gave it away.
    detail = f"0:0 -> {UID}:{GID}, this folder only"
    assert home_fix == [{"step": "home", "action": "chown", "path": ".", "detail": detail}]
    assert first["warnings"] == []
    assert not list(fresh.home.glob("*.berdl-new"))
    text = (fresh.home / ".bashrc").read_text()
    assert "written by berdl-init" in text
    assert fresh.venv_rel in text
    # The dotfiles are berdl-init's renders, recorded in its ledger: later versions may replace them.
    ledger = json.loads((fresh.home / ".local/state/berdl-init/ledger.json").read_text())
    for dotfile in (".bashrc", ".bash_profile"):
        assert ledger["files"][dotfile] == hashlib.sha256((fresh.home / dotfile).read_bytes()).hexdigest()


def test_the_notebook_image_has_the_favorites_extension_and_its_static_environment(fresh: PodRun) -> None:
    listed = fresh.podman.exec(fresh.notebook, "jupyter", "labextension", "list")
    assert "@jlab-enhanced/favorites" in listed.stdout + listed.stderr  # it prints to stderr
    env = fresh.run_python("python", "import json, os; print(json.dumps(dict(os.environ)))")
    assert env["JUPYTER_PREFER_ENV_PATH"] == "0"
    assert env["SHELL"] == "/bin/bash"
    assert env["JUPYTER_MODE"]
    home = fresh.home_in_pod
    assert (env["JUPYTER_CONFIG_DIR"], env["JUPYTER_DATA_DIR"], env["JUPYTER_RUNTIME_DIR"]) == (
        f"{home}/.jupyter",
        f"{home}/.jupyter/data",
        f"{home}/.jupyter/runtime",
    )


def test_the_notebook_reads_its_credentials_from_the_secret_and_the_pod_holds_none(fresh: PodRun) -> None:
    values = fresh.credentials
    assert set(values) == {"KBASE_AUTH_TOKEN", "JUPYTERHUB_API_TOKEN"}  # no MinIO keys fetched here
    manifest = fresh.manifest.read_text()
    assert [key for key, value in values.items() if value in manifest] == []
    env = fresh.run_python("python", "import json, os; print(json.dumps(dict(os.environ)))")
    assert env["KBASE_AUTH_TOKEN"] == values["KBASE_AUTH_TOKEN"]
    assert env["JUPYTERHUB_API_TOKEN"] == env["JPY_API_TOKEN"] == values["JUPYTERHUB_API_TOKEN"]


def test_the_notebook_container_runs_without_capabilities(fresh: PodRun) -> None:
    status = fresh.run("grep", "-E", "^(CapBnd|CapEff|NoNewPrivs|Seccomp):", "/proc/self/status")
    fields = dict(line.split(":\t") for line in status.strip().splitlines())
    # A non-root process has no effective capabilities anyway; dropping ALL also empties the bounding
    # set, so that nothing (a setuid file, sudo) can bring one back.
    assert int(fields["CapBnd"], 16) == 0
    assert int(fields["CapEff"], 16) == 0
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"  # a filter: the runtime's default profile


# --- the legacy home -------------------------------------------------------------------------------


def test_nothing_of_the_legacy_home_is_lost(legacy: PodRun) -> None:
    after = snapshot(legacy.home)
    assert lost(legacy.before, after, merged={FAVORITES}) == []
    assert (legacy.home / ".bashrc").read_bytes() == LEGACY_BASHRC
    assert "written by berdl-init" in (legacy.home / ".bashrc.berdl-new").read_text()
    warnings = legacy.reports[0]["warnings"]
    assert any(".bashrc" in w for w in warnings), warnings
    # The user's venv was kept as it was (built on the same interpreter), with the user's package.
    assert not [
        c for c in legacy.reports[0]["changes"] if c["step"] == "venv" and c["path"] == legacy.venv_rel
    ]
    own = legacy.run_python(
        f"{legacy.venv_in_pod}/bin/python", "import json, bobs_own_package as p; print(json.dumps(p.MARKER))"
    )
    assert own == "bobs_own_package"


def test_the_legacy_favorites_keep_the_user_entries_and_keys(legacy: PodRun) -> None:
    before = json5.loads(LEGACY_FAVORITES)
    after = json.loads((legacy.home / FAVORITES).read_text())
    assert after["showWidget"] is True
    assert after["favorites"][: len(before["favorites"])] == before["favorites"]
    names = [f["name"] for f in after["favorites"]]
    assert names == ["projects", "Home"]


def test_a_legacy_venv_with_a_copied_python_is_kept(podman: Podman, tmp_path: Path) -> None:
    run = _start(podman, "carol", tmp_path, tmp_path / "homes" / "carol")
    run.home.mkdir(parents=True)
    os.chown(run.home, UID, GID)
    _make_legacy_venv(podman, run, tmp_path / "wheels", copies=True)
    try:
        report = run.play()
    finally:
        run.down()
    moved = [c for c in report["changes"] if c["action"] == "move-aside"]
    assert moved == [], report["warnings"]
