"""The base virtualenv, and the kernelspec that makes it the user's notebook kernel.

A venv counts as present when its pyvenv.cfg names the configured interpreter and its major.minor
version, and its python runs: a patch release of the image's Python keeps it. One built on another
interpreter or another minor version (after an image upgrade) is moved aside, never deleted, and
rebuilt; then what the user had installed in it is installed again (berdl_init/restore.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar

from berdl_init import usersite
from berdl_init.errors import UnsafePathError
from berdl_init.managed import plan_managed_file
from berdl_init.plan import ApplyContext, Change, PlanContext, StepPlan, WriteFile
from berdl_init.safefs import temp_name
from berdl_init.state import sha256
from berdl_init.venvbuild import PIP_COMMANDS, build_venv, pip_launcher

if TYPE_CHECKING:
    from berdl_init.restore import Distribution, Outcome

KERNEL_DIR = ".jupyter/data/kernels/python3"
KERNEL_LOGOS = ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg")
PROBE_TIMEOUT = 30.0
#: While a restore has not finished: in the old venv (written before it is moved aside, so that a run
#: killed before the new venv is published still knows what to restore) and in the new one (published with
#: it): {"from": the old venv, home-relative, "attempts": how many restores have started}. The restore
#: removes both when it ends; a run killed before leaves them, and the next run restores.
RESTORE_PENDING = "berdl-restore-pending.json"
#: How many restores start before a run gives up and only lists what is missing. A restore killed once
#: (the pod stopped meanwhile) is run again; one killed every time it runs is most likely what kills the
#: pod (pip over the initContainer's memory limit, or filling the home), and running it at every start
#: would keep the user's server from ever starting.
RESTORE_ATTEMPTS = 2
#: In a rebuilt venv, what its restore could not install and the command that does; kept until the user
#: deletes it, and new terminals mention it meanwhile (images/notebook/berdl-venv-notice.sh).
NOT_RESTORED = "berdl-not-restored.txt"
#: The same, for the packages of a user site (`pip install --user` on another Python) installed again.
NOT_RESTORED_USER_SITE = "berdl-not-restored-user-site.txt"


@dataclass(frozen=True)
class BuildVenv(Change):
    python: Path
    system_site_packages: bool
    #: The old venv (home-relative) whose packages are to be installed again in this one, if any.
    restore_from: str | None = None

    def apply(self, ctx: ApplyContext) -> None:
        parent = PurePosixPath(self.path).parent.as_posix()
        name = PurePosixPath(self.path).name
        build = temp_name(name) if parent == "." else f"{parent}/{temp_name(name)}"
        if parent != ".":
            ctx.home.makedirs(parent)
        ctx.home.remove_tree(build)  # what a killed run left under the temporary name
        try:
            # virtualenv writes by path: it builds in a folder private to this run, outside the home, and
            # the result is copied in through safefs, so no folder swapped meanwhile can redirect a write.
            with tempfile.TemporaryDirectory(prefix="berdl-init-venv-") as scratch:
                private = Path(scratch) / name
                build_venv(private, ctx.home.absolute(self.path), self.python, self.system_site_packages)
                if self.restore_from is not None:
                    (private / RESTORE_PENDING).write_bytes(_pending(self.restore_from))
                ctx.home.copy_in(private, build)
        except (Exception, SystemExit) as error:
            # virtualenv reports most failures as RuntimeError and the like, and a destination it finds
            # unusable (a folder swapped meanwhile) through argparse, as SystemExit: they fail this step
            # (apply_plan handles OSError), not the whole run, and the half-built folder goes.
            with contextlib.suppress(OSError):
                ctx.home.remove_tree(build)
            if isinstance(error, OSError):
                raise
            if isinstance(error, SystemExit):
                raise OSError(f"virtualenv refused its arguments (exit status {error.code})") from None
            raise OSError(f"virtualenv failed: {error}") from error
        ctx.home.rename(build, self.path)
        # virtualenv ran the interpreter to learn its version: remember it, so the next run need not.
        cfg = parse_pyvenv_cfg((ctx.home.read(f"{self.path}/pyvenv.cfg") or b"").decode(errors="replace"))
        real = os.path.realpath(self.python)
        identity = _identity(real)
        if identity is not None and cfg.get("version_info"):
            ctx.ledger.interpreters[real] = {
                "identity": identity,
                "version": _three_part(cfg["version_info"]),
            }


@dataclass(frozen=True)
class RestorePackages(Change):
    """Install again in the venv at `path` what the user had installed in the old venv `restore_from`."""

    restore_from: str
    timeout: float
    #: How many restores into this venv had started (and not ended) before this run, by its marker.
    attempts: int = 0

    #: The file in the venv that lists what could not be installed, while something is missing.
    not_restored: ClassVar[str] = NOT_RESTORED

    def apply(self, ctx: ApplyContext) -> None:
        # Imported here: only a rebuilt venv needs it, and a run with nothing to do stays light.
        from berdl_init.piptemp import PIP_TMP, PipTemp
        from berdl_init.restore import list_only, restore

        venv = ctx.home.absolute(self.path)
        python = venv / "bin" / "python"
        pip_tmp = PipTemp(ctx.home)
        old: list[Distribution] = []
        aside = ctx.home.lstat(self.restore_from)
        if aside is not None and stat.S_ISDIR(aside.st_mode):  # a symlink moved aside is no venv of ours
            try:
                # Read by path, as the user: the folder is theirs, and only its metadata files are read.
                old = self._distributions(ctx.home.absolute(self.restore_from))
            except (OSError, ValueError) as error:  # unreadable, or metadata that is not text
                ctx.warnings.append(f"the packages of ~/{self.restore_from} cannot be read: {error}")
        if self.attempts >= RESTORE_ATTEMPTS:
            why = f"not attempted again: its restore was interrupted {self.attempts} times"
            outcome = list_only(old, python, self.timeout, why)
            ctx.warnings.append(
                f"the restore of ~/{self.restore_from} was interrupted {self.attempts} times (the pod "
                "stopped while pip ran: out of memory?): it is not attempted again"
            )
        else:
            # Counted before pip starts: if pip is what kills the pod, the count survives it.
            ctx.home.write(f"{self.path}/{RESTORE_PENDING}", _pending(self.restore_from, self.attempts + 1))
            outcome = restore(old, python, self.timeout, pip_tmp)
            if pip_tmp.unusable:
                ctx.warnings.append(
                    f"~/{PIP_TMP} cannot be made (a symlink or a file on the way?): pip unpacked and "
                    "built in the pod's /tmp, which large packages may fill"
                )
        # Before the markers go: while a marker is there, the next run restores, and empties it first.
        with contextlib.suppress(UnsafePathError, NotADirectoryError, PermissionError):
            pip_tmp.remove()
        self._report(ctx, outcome, python)
        # The old venv's mark first: while the new venv's is there, the next run restores again.
        self._unmark_source(ctx)
        ctx.home.unlink(f"{self.path}/{RESTORE_PENDING}")

    def _distributions(self, source: Path) -> list[Distribution]:
        from berdl_init.restore import old_distributions

        return old_distributions(source)

    def _unmark_source(self, ctx: ApplyContext) -> None:
        with contextlib.suppress(UnsafePathError, NotADirectoryError):
            ctx.home.unlink(f"{self.restore_from}/{RESTORE_PENDING}")

    def _header(self, version: str) -> tuple[str, str] | None:
        """The first lines of the list of what is missing (None: the old venv's)."""
        return None

    def venv_version(self, ctx: ApplyContext) -> str:
        """The venv's X.Y, as its pyvenv.cfg says."""
        cfg = parse_pyvenv_cfg((ctx.home.read(f"{self.path}/pyvenv.cfg") or b"").decode(errors="replace"))
        return ".".join(cfg.get("version_info", "").split(".")[:2]) or "(unknown)"

    def _report(self, ctx: ApplyContext, outcome: Outcome, python: Path) -> None:
        from berdl_init.restore import not_restored_text

        version = self.venv_version(ctx)
        if outcome.missing:
            text = not_restored_text(
                outcome, python, self.restore_from, version, header=self._header(version)
            )
            ctx.home.write(f"{self.path}/{self.not_restored}", text)
        else:  # what a killed run's restore listed has come back since
            ctx.home.unlink(f"{self.path}/{self.not_restored}")

        if outcome.restored or outcome.newer:
            count = len(outcome.restored) + len(outcome.newer)
            ctx.warnings.append(
                f"{count} package(s) of ~/{self.restore_from} installed again in ~/{self.path}"
            )
        ctx.warnings.extend(
            f"{dist.name} {dist.version} does not install on Python {version}: {now} was installed instead"
            for dist, now in outcome.newer
        )
        if outcome.missing:
            names = ", ".join(f"{dist.name} {dist.version} ({why})" for dist, why in outcome.missing)
            ctx.warnings.append(
                f"not installed again: {names}; ~/{self.path}/{self.not_restored} has the command that does"
            )


@dataclass(frozen=True)
class RestoreUserSite(RestorePackages):
    """Install into the venv at `path` what the user installed with `pip install --user` in the user site
    `restore_from`, which the venv's python does not read (another X.Y); the user site is left as it is."""

    not_restored: ClassVar[str] = NOT_RESTORED_USER_SITE

    def apply(self, ctx: ApplyContext) -> None:
        super().apply(ctx)
        ctx.ledger.user_sites[self.restore_from] = self.venv_version(ctx)  # once: later rebuilds carry them

    def _distributions(self, source: Path) -> list[Distribution]:
        from berdl_init.restore import site_distributions

        return site_distributions([source])

    def _unmark_source(self, ctx: ApplyContext) -> None:
        pass  # nothing is ever written into the user site

    def _header(self, version: str) -> tuple[str, str] | None:
        return (
            f"# berdl-init installed into this venv (Python {version}) what you had installed with",
            f"# pip install --user in ~/{self.restore_from} (left as it is); these are not installed in it:",
        )


@dataclass(frozen=True)
class MoveAside(Change):
    to: str
    #: Whether the old venv's packages are to be restored: it is then marked first (RESTORE_PENDING).
    restore: bool = False

    def apply(self, ctx: ApplyContext) -> None:
        if self.restore:
            with contextlib.suppress(UnsafePathError, NotADirectoryError):  # not a folder: nothing to restore
                ctx.home.write(f"{self.path}/{RESTORE_PENDING}", _pending(self.to), mode=0o644)
        ctx.home.rename(self.path, self.to)


def plan(ctx: PlanContext) -> StepPlan:
    settings = ctx.settings
    step = StepPlan("venv")
    rel = settings.venv_rel
    found = inspect(ctx, rel, settings.venv_python)
    problem = found.problem
    rebuild = problem is not None
    if problem == "absent":
        # A run killed between moving the old venv aside and publishing the new one left a marked aside.
        restore_from = _unfinished_aside(ctx, rel) if settings.venv_restore else None
        step.changes.append(
            _build(rel, settings.venv_python, settings.venv_system_site_packages, "new", restore_from)
        )
        if restore_from is not None:
            step.changes.append(_restore(rel, restore_from, settings.venv_restore_timeout))
    elif problem is not None:
        aside = _aside_name(ctx, rel)
        restore_from = aside if settings.venv_restore else None
        step.changes.append(
            MoveAside(
                "move-aside",
                rel,
                f"{problem}; kept as ~/{aside}",
                to=aside,
                restore=restore_from is not None,
            )
        )
        step.changes.append(
            _build(rel, settings.venv_python, settings.venv_system_site_packages, "rebuilt", restore_from)
        )
        step.warnings.append(f"the venv ~/{rel} {problem}: it was moved to ~/{aside} and rebuilt")
        if restore_from is not None:
            step.changes.append(_restore(rel, restore_from, settings.venv_restore_timeout))
    pending = None
    if problem is None:
        pending = _pending_restore(ctx, rel) if settings.venv_restore else None
        if pending is not None:  # a run killed while restoring
            step.changes.append(
                _restore(rel, pending.restore_from, settings.venv_restore_timeout, pending.attempts)
            )
        sees_image = found.sees_system_site_packages
        if sees_image != settings.venv_system_site_packages:
            # Rebuilding would hide what the user installed in it: keep it, and say how to get a new one.
            step.warnings.append(
                f"the venv ~/{rel} {'sees' if sees_image else 'does not see'} the image's packages, unlike "
                f"BERDL_VENV_SYSTEM_SITE_PACKAGES={str(settings.venv_system_site_packages).lower()}; "
                "it is kept as it is (move it away to have it rebuilt)"
            )
        if sees_image:
            step.changes.extend(_missing_pip_launchers(ctx, rel))

    _plan_user_sites(ctx, rel, found, pending.restore_from if pending else None, step)
    kernel_changes, kernel_warnings = _plan_kernelspec(ctx, rel, venv_ready=not rebuild)
    step.changes.extend(kernel_changes)
    step.warnings.extend(kernel_warnings)
    return step


def _build(
    rel: str, python: Path, system_site_packages: bool, detail: str, restore_from: str | None = None
) -> BuildVenv:
    flavour = "with the image's packages" if system_site_packages else "isolated, with pip"
    return BuildVenv(
        "build-venv",
        rel,
        f"{detail}, on {python}, {flavour}",
        python=python,
        system_site_packages=system_site_packages,
        restore_from=restore_from,
    )


def _restore(rel: str, restore_from: str, timeout: float, attempts: int = 0) -> RestorePackages:
    if attempts >= RESTORE_ATTEMPTS:
        detail = f"list what ~/{restore_from} had: its restore was interrupted {attempts} times"
    else:
        detail = f"install again what ~/{restore_from} had (at most {timeout:g} s)"
    kind = RestoreUserSite if usersite.is_user_site(restore_from) else RestorePackages
    return kind(
        "restore-packages", rel, detail, restore_from=restore_from, timeout=timeout, attempts=attempts
    )


def _plan_user_sites(
    ctx: PlanContext, rel: str, found: FoundVenv, pending: str | None, step: StepPlan
) -> None:
    """Install again into the venv the user sites its python does not read (usersite.py), and note for a
    user moving in what becomes of each."""
    settings = ctx.settings
    sites = usersite.found(ctx.home)
    if not sites:
        return
    if found.problem is None:
        minor = _minor(found.cfg.get("version_info") or found.cfg.get("version") or "")
        sees = found.sees_system_site_packages
    else:  # built by this run
        minor = _minor(
            _python_version(ctx, settings.venv_python, os.path.realpath(settings.venv_python)) or ""
        )
        sees = settings.venv_system_site_packages
    if not minor:
        return  # the interpreter does not run: the build fails and says so
    unread = {site.rel for site in usersite.unread(sites, minor, sees, ctx.ledger.user_sites)}
    for site in sites:
        where = f"~/{site.rel}"
        if site.rel not in unread:
            if site.rel not in ctx.ledger.user_sites:
                step.notes.append(
                    f"your `pip install --user` packages (Python {site.minor}, {where}) import in the "
                    "notebook's venv as they are"
                )
            continue
        if not settings.venv_restore:
            step.notes.append(
                f"your `pip install --user` packages of Python {site.minor} ({where}) are not read by the "
                f"notebook's venv (Python {minor}), and BERDL_VENV_RESTORE=false installs none"
            )
            continue
        if site.rel != pending:  # a run killed during its restore planned it already
            step.changes.append(_restore(rel, site.rel, settings.venv_restore_timeout))
        step.notes.append(
            f"your `pip install --user` packages of Python {site.minor} ({where}) are installed again, "
            f"where the package index has them, into the notebook's venv ~/{rel} (Python {minor})"
        )


def _pending(restore_from: str, attempts: int = 0) -> bytes:
    return (json.dumps({"from": restore_from, "attempts": attempts}) + "\n").encode()


@dataclass(frozen=True)
class PendingRestore:
    """What a restore marker says."""

    restore_from: str
    attempts: int


def _unfinished_aside(ctx: PlanContext, rel: str) -> str | None:
    """The newest moved-aside venv still marked as to be restored, if any."""
    parent = PurePosixPath(rel).parent.as_posix()
    prefix = f"{PurePosixPath(rel).name}.berdl-old-"
    try:
        names = sorted((name for name in ctx.home.listdir(parent) if name.startswith(prefix)), reverse=True)
    except OSError:
        return None
    for name in names:
        aside = name if parent == "." else f"{parent}/{name}"
        pending = _pending_restore(ctx, aside)
        if pending is not None and pending.restore_from == aside:
            return aside
    return None


def _pending_restore(ctx: PlanContext, rel: str) -> PendingRestore | None:
    """What the restore marker in the venv `rel` says, if it has one."""
    try:
        data = ctx.home.read(f"{rel}/{RESTORE_PENDING}")
    except OSError:
        return None
    if data is None:
        return None
    try:
        marker = json.loads(data)
        found, attempts = marker.get("from"), marker.get("attempts", 0)
    except (ValueError, AttributeError):
        return None
    if not isinstance(found, str) or not _inside(found):
        return None
    # A marker of an older berdl-init has no count; one that is not a count is taken as none started.
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
        attempts = 0
    return PendingRestore(found, attempts)


def _inside(rel: str) -> bool:
    path = PurePosixPath(rel)
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts


@dataclass(frozen=True)
class FoundVenv:
    #: None when the venv is usable; "absent"; or why it is not usable.
    problem: str | None
    cfg: dict[str, str]

    @property
    def sees_system_site_packages(self) -> bool:
        return self.cfg.get("include-system-site-packages", "false").lower() == "true"


def inspect(ctx: PlanContext, rel: str, python: Path) -> FoundVenv:
    """Whether the venv at `rel` is usable on `python`, and its pyvenv.cfg."""
    if ctx.home.lstat(rel) is None:
        return FoundVenv("absent", {})
    try:
        cfg_bytes = ctx.home.read(f"{rel}/pyvenv.cfg")
    except (UnsafePathError, NotADirectoryError):
        cfg_bytes = None
    if cfg_bytes is None:
        return FoundVenv("is not a virtualenv (no pyvenv.cfg)", {})
    cfg = parse_pyvenv_cfg(cfg_bytes.decode(errors="replace"))

    built_on = _named_interpreter(cfg)
    wanted = os.path.realpath(python)
    if built_on != wanted:
        return FoundVenv(f"was built on {built_on or '(unknown)'}, not on {python}", cfg)
    built_for = _three_part(cfg.get("version_info") or cfg.get("version") or "")
    interpreter_version = _python_version(ctx, python, wanted)
    if interpreter_version is None:
        raise OSError(f"the interpreter {python} does not run")
    # A patch release (3.11.6 -> 3.11.7) keeps the venv: same ABI, same site-packages folder.
    if _minor(built_for) != _minor(interpreter_version):
        return FoundVenv(
            f"was built for Python {built_for or '(unknown)'}, and the interpreter is now "
            f"{interpreter_version}",
            cfg,
        )
    # The venv's own python: a symlink to the interpreter (virtualenv, python -m venv), or a copy of it
    # (venv.create() from Python code, which the replaced spawner used); a copy must run too.
    venv_python = ctx.home.absolute(f"{rel}/bin/python")
    real = ctx.home.real_path(f"{rel}/bin/python")
    if real != wanted and _minor(_python_version(ctx, venv_python, real) or "") != _minor(
        interpreter_version
    ):
        return FoundVenv("has a python that does not run as the interpreter does", cfg)
    return FoundVenv(None, cfg)


def _named_interpreter(cfg: dict[str, str]) -> str | None:
    """The real path of the interpreter a pyvenv.cfg says its venv was built on.

    virtualenv writes base-executable; Python's venv writes executable (3.11 and later); older ones only
    home, the interpreter's folder, where the usual names are tried.
    """
    for key in ("base-executable", "executable"):
        if cfg.get(key):
            return os.path.realpath(cfg[key])
    home = cfg.get("home")
    if not home:
        return None
    for name in ("python3", "python"):
        candidate = os.path.join(home, name)
        if os.path.exists(candidate):
            return os.path.realpath(candidate)
    return None


def parse_pyvenv_cfg(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _three_part(version: str) -> str:
    return ".".join(version.split(".")[:3])


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _python_version(ctx: PlanContext, python: Path, real: str) -> str | None:
    """The X.Y.Z version `python` runs as, or None when it does not run.

    The answer is remembered in the ledger with the identity of the interpreter's file `real`: while that
    file is the same one, it runs as it did, and a run with nothing to do starts no process.
    """
    identity = _identity(real)
    if identity is None:
        return None
    known = ctx.ledger.interpreters.get(real)
    if known is not None and known.get("identity") == identity and "version" in known:
        return known["version"]
    # -S keeps the probe to the interpreter's own start-up, without site.
    version = _ask(python, "import sys; print('%d.%d.%d' % sys.version_info[:3])", site=False)
    if not version:
        return None
    ctx.ledger.interpreters[real] = {"identity": identity, "version": version}
    return version


def _identity(real: str) -> str | None:
    """What changes when the interpreter's file is replaced (an image upgrade), even at the same path.

    Only the size and the modification time, which an image layer carries: each container's root
    filesystem is an overlay mount of its own, whose device number differs from one pod start to the
    next (and inode numbers may too), and the change time is when a node unpacked the layer, so it differs
    from node to node while the image is the same. An image upgrade brings a new interpreter file.
    """
    try:
        st = os.stat(real)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def _aside_name(ctx: PlanContext, rel: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    candidate = f"{rel}.berdl-old-{stamp}"
    counter = 1
    while ctx.home.lstat(candidate) is not None:
        counter += 1
        candidate = f"{rel}.berdl-old-{stamp}-{counter}"
    return candidate


def _missing_pip_launchers(ctx: PlanContext, rel: str) -> list[Change]:
    """A launcher only where no pip command is: a pip the user installed in the venv stays theirs."""
    changes: list[Change] = []
    for command in PIP_COMMANDS:
        path = f"{rel}/bin/{command}"
        if ctx.home.lstat(path) is None:
            changes.append(
                WriteFile(
                    "write",
                    path,
                    "runs the image's pip for this venv",
                    data=pip_launcher(),
                    mode=0o755,
                    old=None,
                    remember=False,
                )
            )
    return changes


def kernelspec(venv_dir: Path) -> bytes:
    spec = {
        "argv": [str(venv_dir / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    return (json.dumps(spec, indent=1) + "\n").encode()


def _plan_kernelspec(ctx: PlanContext, rel: str, *, venv_ready: bool) -> tuple[list[Change], list[str]]:
    """kernel.json (managed like a dotfile) and ipykernel's logos (written only when absent).

    The venv's python must find ipykernel. That is looked up only when something is missing or the venv
    is (re)built: a rebuilt venv may lack the ipykernel the old one had, and the kernel would not start.
    """
    settings = ctx.settings
    assert settings.venv_dir is not None
    spec = kernelspec(settings.venv_dir)
    try:
        ctx.home.lstat(f"{KERNEL_DIR}/kernel.json")
    except UnsafePathError as error:  # a symlink on the way: the venv itself is still built
        return [], [f"{error}; the python3 kernelspec is left as it is"]
    changes, warnings = plan_managed_file(ctx, f"{KERNEL_DIR}/kernel.json", sha256(spec), lambda: spec)
    missing_logos = [name for name in KERNEL_LOGOS if ctx.home.lstat(f"{KERNEL_DIR}/{name}") is None]
    if venv_ready and not changes and not missing_logos:
        return [], warnings

    if venv_ready:
        resources = _ipykernel_resources(ctx.home.absolute(f"{rel}/bin/python"))
    elif settings.venv_system_site_packages:
        resources = _ipykernel_resources(settings.venv_python)
    else:
        resources = None
    if resources is None:
        return [], [
            *warnings,
            f"ipykernel is not importable in the venv ~/{rel}, so the python3 kernel cannot run in it: "
            "pip install ipykernel in the venv (the next start then completes its kernelspec)",
        ]
    for name in missing_logos:
        source = resources / name
        if source.is_file():
            logo = source.read_bytes()
            changes.append(
                WriteFile(
                    "write",
                    f"{KERNEL_DIR}/{name}",
                    "kernel logo",
                    data=logo,
                    mode=0o644,
                    old=None,
                    remember=False,
                )
            )
    return changes, warnings


def _ipykernel_resources(python: Path) -> Path | None:
    """The folder of ipykernel's logos as `python` sees it, or None when it has no ipykernel."""
    code = (
        "import importlib.util, os; s = importlib.util.find_spec('ipykernel'); "
        "print(os.path.join(s.submodule_search_locations[0], 'resources') if s else '')"
    )
    found = _ask(python, code)
    return Path(found) if found else None


def _ask(python: Path, code: str, *, site: bool = True) -> str | None:
    """What `python -I -c CODE` prints (isolated: no user site, no PYTHON* settings), or None when it does
    not run or fails."""
    # -B: the probe must not write bytecode into the venv (by path, and the venv is the user's).
    flags = ["-I", "-B"] if site else ["-I", "-B", "-S"]
    try:
        result = subprocess.run(
            [str(python), *flags, "-c", code],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
