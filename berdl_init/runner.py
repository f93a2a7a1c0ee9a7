"""One run of berdl-init, in the order its guarantees need:

1. the home folder itself is checked (a symlink or a file is refused);
2. before the first change to a home (creating or chowning the folder, or creating the lock), every
   template is rendered, so a template error changes nothing; the folder is then fixed (as root:
   created or chowned, never recursively);
3. as root, berdl-init becomes the user;
4. under the home's lock, every step plans, then the plan is applied (or only shown).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import time

from berdl_init import adopt, homeowner, privileges
from berdl_init.errors import HomeError, SettingsError
from berdl_init.plan import ApplyContext, Change, PlanContext, apply_plan, make_plan, preview_plan
from berdl_init.report import Report, ReportedChange
from berdl_init.safefs import SafeHome
from berdl_init.settings import Settings, unknown_variables
from berdl_init.state import LOCK, STATE_DIR, Ledger, home_lock, read_ledger, read_ledger_again, save_ledger
from berdl_init.steps import PLANNERS
from berdl_init.steps.dotfiles import render_all

STATELESS = (
    f"~/{STATE_DIR} cannot be used (a symlink on the way, a lock that is not a file, no permission, or no "
    "flock on this file system): this run goes on without the lock and the ledger, and every existing "
    "dotfile counts as the user's"
)

#: Who a dry run as root becomes when no owner is known: it only reads, and never as root, since the venv
#: step runs the venv's own python, which the user controls.
NOBODY = 65534

UNKNOWN_OWNER = (
    "BERDL_UID and BERDL_GID are not set and the home names no user (missing or owned by root), so the "
    "owner of what would be created is unknown; a real run as root refuses to start. This dry run looks at "
    f"the home as uid {NOBODY}"
)

NAMELESS = (
    "uid {uid} has no passwd entry and BERDL_USER is not set, so the user's name (the venv's) is unknown; a "
    "real run refuses to start. This dry run calls the user {name}"
)

#: How long a run waits for another run on the same home (two named servers starting together).
LOCK_TIMEOUT = 120.0


def run(settings: Settings, *, dry_run: bool, lock_timeout: float | None = None) -> Report:
    started = time.perf_counter()
    if lock_timeout is None:  # another run may be restoring a venv's packages meanwhile
        lock_timeout = LOCK_TIMEOUT + (settings.venv_restore_timeout if settings.venv_restore else 0)
    report = Report(home=str(settings.home), dry_run=dry_run)
    report.warnings.extend(unknown_variables(os.environ))
    home_stat = _home_stat(settings)
    owner = None
    if privileges.is_root():
        try:
            owner = privileges.home_owner(settings, home_stat)
        except SettingsError:
            if not dry_run:
                raise
            report.warnings.append(UNKNOWN_OWNER)
        if settings.user_is_login_name:  # root's: the user is whom berdl-init becomes
            settings = _named_after(settings, owner[0] if owner else NOBODY, dry_run, report)

    foreign = _another_uids_home(settings, home_stat, owner)
    if foreign is not None:
        # A legacy hub's home: left exactly as it is, for an operator to give to the user first.
        report.warnings.append(foreign)
        report.not_run = "the home belongs to another uid"
        report.seconds = time.perf_counter() - started
        return report

    templates_checked = False
    fix = _home_fix(home_stat, owner)
    if fix is not None:
        report.changes.append(ReportedChange("home", fix))
        if not dry_run:
            _check_templates(settings)
            templates_checked = True
            _fix_home_folder(settings, owner)
            home_stat = _home_stat(settings)
    if privileges.is_root():
        privileges.drop_privileges(*(owner or (NOBODY, NOBODY)))

    with _open_home(settings, home_stat, dry_run) as home:
        before_lock = read_ledger(home)
        _refuse_another_users_home(settings, before_lock.ledger)  # before the lock: nothing written
        if not dry_run and not templates_checked and not _exists(home, LOCK):
            _check_templates(settings)  # creating the lock is the first change to this home
        with contextlib.nullcontext(True) if dry_run else home_lock(home, lock_timeout) as has_state:
            if has_state:
                under_lock = read_ledger_again(home, before_lock)
                ledger, warning = under_lock.ledger, under_lock.warning
            else:
                ledger, warning = Ledger(), STATELESS
            if warning:
                report.warnings.append(warning)
            if has_state:  # again under the lock: a run for another user may have recorded it meanwhile
                _refuse_another_users_home(settings, ledger)
                taken = homeowner.take_over(ledger, settings.user)
                if taken:
                    report.warnings.append(taken)
            context = PlanContext(settings, home, ledger)
            plans = make_plan(context, PLANNERS)
            if has_state and adopt.first_run(ledger, warning):  # a home from elsewhere: say what changed
                note = adopt.plan(context, plans)
                if note is not None:
                    plans.append(note)
            if dry_run:
                outcomes = preview_plan(plans)
            else:
                outcomes = apply_plan(plans, ApplyContext(home, ledger))
                try:
                    if has_state:
                        save_ledger(home, ledger)
                except OSError as error:  # the next run then treats unrecorded files as the user's: safe
                    report.warnings.append(f"the ledger could not be saved: {error}")

    for plan, outcome in zip(plans, outcomes, strict=True):
        report.changes.extend(ReportedChange(outcome.name, change) for change in outcome.changes)
        report.warnings.extend(f"{plan.name}: {warning}" for warning in plan.warnings)
    report.steps = outcomes
    report.seconds = time.perf_counter() - started
    return report


def _another_uids_home(
    settings: Settings, home_stat: os.stat_result | None, owner: tuple[int, int] | None
) -> str | None:
    """The warning for a home whose files belong to another uid (homeowner.py), or None."""
    ids = owner if privileges.is_root() else (os.geteuid(), os.getegid())
    if ids is None:  # a dry run as root that knows no owner: it looks as nobody, and warns of that
        return None
    found = homeowner.foreign_owner(settings.home, home_stat, ids[0])
    return None if found is None else homeowner.left_alone(settings.home, found, *ids)


def _refuse_another_users_home(settings: Settings, ledger: Ledger) -> None:
    refusal = homeowner.refusal(ledger, settings.user, settings.renamed_from, settings.home)
    if refusal:
        raise HomeError(refusal)


def _named_after(settings: Settings, uid: int, dry_run: bool, report: Report) -> Settings:
    """The settings for the user whom `uid` is in the passwd database. Without an entry a real run refuses
    before any change, rather than name the user (and their venv) after root, who started it."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        if not dry_run:
            raise SettingsError(
                f"BERDL_USER: not set, and uid {uid} has no passwd entry to name the user after; "
                "set BERDL_USER to the user's name (it names the venv)"
            ) from None
        name = f"uid{uid}"
        report.warnings.append(NAMELESS.format(uid=uid, name=name))
    return settings.for_user(name)


def _open_home(settings: Settings, home_stat: os.stat_result | None, dry_run: bool) -> SafeHome:
    """The home, opened without following a symlink; an empty view of a home a dry run would create."""
    if home_stat is None:
        return SafeHome(settings.home, None)
    try:
        home = SafeHome.open(settings.home)
    except OSError as error:
        raise HomeError(f"the home {settings.home} cannot be opened: {error}") from None
    if not dry_run and not os.access(settings.home, os.W_OK):
        home.close()
        raise HomeError(f"the home {settings.home} is not writable by uid {os.geteuid()}")
    return home


def _exists(home: SafeHome, rel: str) -> bool:
    try:
        return home.lstat(rel) is not None
    except OSError:
        return False  # a symlink on the way: taking the lock reports it


def _check_templates(settings: Settings) -> None:
    """Render every template once, so that a template error stops the run before its first change."""
    if "dotfiles" in settings.steps:
        render_all(settings)


def _home_stat(settings: Settings) -> os.stat_result | None:
    """The home folder's own stat, or None when it does not exist; refuses a symlink or a non-folder."""
    try:
        st = os.lstat(settings.home)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise HomeError(f"the home {settings.home} cannot be examined: {error.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise HomeError(f"the home {settings.home} is a symlink; berdl-init does not follow it")
    if not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"the home {settings.home} is not a folder")
    return st


def _home_fix(home_stat: os.stat_result | None, owner: tuple[int, int] | None) -> Change | None:
    """What must happen to the home folder itself before the steps can run, if anything; `owner` is who
    it must belong to as root (None: unknown, in a dry run).

    Reported like a step's change, but made by _fix_home_folder before the steps plan.
    """
    if home_stat is None:
        return Change("mkdir", ".", "the home")
    if not privileges.is_root():
        return None
    now = f"{home_stat.st_uid}:{home_stat.st_gid}"
    if owner is None:
        return Change("chown", ".", f"{now} -> BERDL_UID:BERDL_GID (not set), this folder only")
    if (home_stat.st_uid, home_stat.st_gid) != owner:
        return Change("chown", ".", f"{now} -> {owner[0]}:{owner[1]}, this folder only")
    return None


def _fix_home_folder(settings: Settings, owner: tuple[int, int] | None) -> None:
    if owner is not None:  # running as root
        privileges.fix_home(settings.home, *owner)
        return
    try:
        os.mkdir(settings.home, 0o755)
    except FileExistsError:
        pass
    except OSError as error:
        raise HomeError(
            f"the home {settings.home} is missing and cannot be created: {error.strerror}"
        ) from None
