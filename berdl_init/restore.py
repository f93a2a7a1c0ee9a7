"""Installing again, in a venv rebuilt on a new Python, what the user had installed in the old one.

The old venv's python usually no longer runs after an image upgrade, so its distributions are read from
their files (importlib.metadata on its site-packages). Each is installed with the new venv's pip (the
image's, with system site packages), from whatever package index the pod's pip configuration names: at
its old version, else at the newest version that installs on the new Python. A distribution that did not
come from an index (a local wheel, a VCS checkout, an editable install: pip's direct_url.json says so) is
listed, not attempted. Everything runs against one deadline, and nothing here raises: a restore that
cannot finish leaves a list of what is missing and the one command that finishes the job.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

if TYPE_CHECKING:
    from berdl_init.piptemp import PipTemp

#: pip's options for every install of the restore: no prompt, no version check, no bytecode (compiled at
#: first import instead: a pod start should not wait for it), nothing in the user site.
PIP_OPTIONS = ("--disable-pip-version-check", "--no-input", "--no-compile", "--quiet")


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    #: What `pip install` takes to reinstall it when it did not come from an index (a path, a VCS URL,
    #: `-e PATH`); None for a distribution from an index.
    source: tuple[str, ...] | None = None
    #: Why it cannot come from an index, for the list.
    origin: str = ""

    @property
    def pinned(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Outcome:
    #: Installed at the version the old venv had.
    restored: list[Distribution] = field(default_factory=list)
    #: Installed at another version: (the old one, the version now installed).
    newer: list[tuple[Distribution, str]] = field(default_factory=list)
    #: Not installed: (the distribution, why).
    missing: list[tuple[Distribution, str]] = field(default_factory=list)

    def command(self, python: Path) -> str | None:
        """The one command that installs what is missing, or None when nothing is."""
        if not self.missing:
            return None
        arguments = [part for dist, _ in self.missing for part in (dist.source or (dist.name,))]
        return shlex.join([str(python), "-m", "pip", "install", *arguments])


def old_distributions(old_venv: Path) -> list[Distribution]:
    """The distributions installed in the venv at `old_venv`, read from their metadata files."""
    return site_distributions(sorted(old_venv.glob("lib/python*/site-packages")))


def site_distributions(sites: list[Path]) -> list[Distribution]:
    """The distributions installed in the site-packages folders `sites` (a venv's, or a user site)."""
    found: dict[str, Distribution] = {}
    for site in sites:
        for dist in metadata.distributions(path=[str(site)]):
            name = dist.metadata["Name"] if dist.metadata else None
            if not name or not dist.version:
                continue  # a dist-info folder without usable metadata: nothing to ask an index for
            key = canonicalize_name(name)
            found.setdefault(key, _with_origin(dist, key, dist.version))
    return sorted(found.values(), key=lambda dist: dist.name)


def _with_origin(dist: metadata.Distribution, name: str, version: str) -> Distribution:
    """The distribution, with how to reinstall it when pip's direct_url.json says it came from elsewhere."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    if not isinstance(direct, dict) or not isinstance(direct.get("url"), str):
        return Distribution(name, version)
    url: str = direct["url"]
    path = url.removeprefix("file://")
    vcs = direct.get("vcs_info")
    dir_info = direct.get("dir_info")
    if isinstance(vcs, dict):
        ref = f"@{vcs['commit_id']}" if vcs.get("commit_id") else ""
        return Distribution(name, version, (f"{vcs.get('vcs', 'git')}+{url}{ref}",), f"from {url}")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        return Distribution(name, version, ("-e", path), f"editable install of {path}")
    if url.startswith("file://"):
        return Distribution(name, version, (path,), f"installed from the file {path}")
    return Distribution(name, version, (url,), f"installed from {url}")


def provided_names(python: Path, timeout: float) -> set[str] | None:
    """The canonical names of the distributions `python` (the new venv's) sees: the image's and the venv's
    own. None when it cannot tell, and then nothing is installed (the image's version must win)."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions() if d.metadata['Name']})))"
    )
    try:
        result = subprocess.run(
            [str(python), "-I", "-B", "-c", code],
            capture_output=True,
            text=True,
            timeout=max(timeout, 1.0),
            check=False,
        )
        names = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return {canonicalize_name(name) for name in names} if isinstance(names, list) else None


def restore(old: list[Distribution], python: Path, timeout: float, pip_tmp: PipTemp) -> Outcome:
    """Install `old` (from which the image's distributions are left out) into the venv of `python`, each
    pip run with an empty `pip_tmp` as its TMPDIR."""
    deadline = time.monotonic() + timeout
    outcome, from_index = _to_install(old, python, timeout)
    if not from_index:
        return outcome

    # One pip for all, the usual case; one per distribution only when that fails, to find the culprits.
    if _pip(python, [dist.pinned for dist in from_index], deadline, pip_tmp)[0]:
        outcome.restored = from_index
        return outcome
    for dist in from_index:
        ok, error = _pip(python, [dist.pinned], deadline, pip_tmp)
        if ok:
            outcome.restored.append(dist)
            continue
        if error == TIMED_OUT:
            outcome.missing.append((dist, error))
            continue
        ok, newer_error = _pip(python, [dist.name], deadline, pip_tmp)
        if ok:
            outcome.newer.append((dist, installed_version(python, dist.name, deadline) or "a newer version"))
        else:
            outcome.missing.append((dist, newer_error if newer_error == TIMED_OUT else error))
    return outcome


def list_only(old: list[Distribution], python: Path, timeout: float, why: str) -> Outcome:
    """What `restore` would install, all listed as missing for `why`, and no pip run: for a restore that
    is not to be attempted again. What the new venv has meanwhile (from an earlier attempt) is left out."""
    outcome, from_index = _to_install(old, python, timeout)
    outcome.missing += [(dist, why) for dist in from_index]
    return outcome


def _to_install(old: list[Distribution], python: Path, timeout: float) -> tuple[Outcome, list[Distribution]]:
    """Those of `old` that the venv of `python` lacks and that an index can provide; and an Outcome that
    lists the others it lacks (all of them when its python does not run: then nothing is installed)."""
    outcome = Outcome()
    provided = provided_names(python, timeout)
    if provided is None:
        outcome.missing = [(dist, "the new venv's python does not run") for dist in old]
        return outcome, []
    wanted = [dist for dist in old if canonicalize_name(dist.name) not in provided]
    outcome.missing = [(dist, f"{dist.origin}, not from a package index") for dist in wanted if dist.source]
    return outcome, [dist for dist in wanted if dist.source is None]


TIMED_OUT = "out of time (BERDL_VENV_RESTORE_TIMEOUT)"


def _pip(python: Path, requirements: list[str], deadline: float, pip_tmp: PipTemp) -> tuple[bool, str]:
    """Run the venv's pip install; (whether it worked, pip's last error line or why it did not run)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False, TIMED_OUT
    env = {**os.environ, "PIP_USER": "0"}
    tmp = pip_tmp.fresh()  # what the previous run left (killed at its timeout) goes first
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    try:
        result = subprocess.run(
            [str(python), "-m", "pip", "install", *PIP_OPTIONS, *requirements],
            capture_output=True,
            text=True,
            timeout=remaining,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, TIMED_OUT
    except OSError as error:
        return False, f"pip did not start: {error.strerror}"
    if result.returncode == 0:
        return True, ""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return False, (errors or lines or [f"pip exited {result.returncode}"])[0]


def installed_version(python: Path, name: str, deadline: float) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    try:
        result = subprocess.run(
            [str(python), "-I", "-B", "-c", code],
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1.0),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def not_restored_text(
    outcome: Outcome, python: Path, old_venv: str, new_python: str, *, header: tuple[str, str] | None = None
) -> bytes:
    """The file left in the new venv while something is missing; new terminals mention it. `header`: its
    first two lines, for packages that came from elsewhere than an old venv."""
    command = outcome.command(python)
    lines = [
        *(
            header
            or (
                f"# berdl-init rebuilt this venv on Python {new_python}; these packages of the old one",
                f"# (kept at ~/{old_venv}) are not installed in it:",
            )
        ),
        "#",
        *(f"#   {dist.name} {dist.version}: {why}" for dist, why in outcome.missing),
        "#",
        "# This command installs them; delete this file afterwards (new terminals mention it until then):",
        f"{command}",
    ]
    return ("\n".join(lines) + "\n").encode()
