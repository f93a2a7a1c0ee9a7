"""The command line: berdl-init [--home PATH] [--dry-run | --check] [--only STEP]... [--skip STEP]...
[--json] [--strict] [--config FILE] [-v]

Exit status: 0 done (warnings possible); 1 --check found pending changes; 2 invalid settings or usage,
nothing changed; 3 a step failed under --strict, or the home itself cannot be used.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from berdl_init import __version__, termination

if TYPE_CHECKING:
    from berdl_init.report import Report

STEP_NAMES = ("dirs", "dotfiles", "venv", "favorites")
EXIT_PENDING, EXIT_USAGE, EXIT_FAILED = 1, 2, 3


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", metavar="PATH", help="The home to prepare [BERDL_HOME, default $HOME].")
@click.option("--dry-run", is_flag=True, help="Show what would change (with diffs), change nothing, exit 0.")
@click.option("--check", is_flag=True, help="Like --dry-run, but exit 1 when anything would change.")
@click.option("--only", multiple=True, type=click.Choice(STEP_NAMES), help="Run only this step (repeatable).")
@click.option(
    "--skip", multiple=True, type=click.Choice(STEP_NAMES), help="Do not run this step (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object on stdout.")
@click.option("--strict", is_flag=True, help="Exit 3 when a step fails (default: report it and exit 0).")
@click.option("--config", metavar="FILE", help="A TOML file with settings (lower-case keys).")
@click.option("-v", "--verbose", is_flag=True, help="Also show each step's status and time.")
@click.version_option(__version__, prog_name="berdl-init")
def main(
    home: str | None,
    dry_run: bool,
    check: bool,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    as_json: bool,
    strict: bool,
    config: str | None,
    verbose: bool,
) -> None:
    """Prepare a JupyterHub user's home: .jupyter folders, dotfiles, a base virtualenv, JupyterLab favorites.

    Settings come from BERDL_* environment variables and --config; --home, --only and --skip
    override BERDL_HOME and BERDL_STEPS.
    """
    started = time.monotonic()
    from berdl_init.errors import HomeError, SettingsError
    from berdl_init.runner import run
    from berdl_init.settings import load_settings

    if dry_run and check:
        raise click.UsageError("--dry-run and --check cannot be combined")
    overrides: dict[str, Any] = {}
    if home is not None:
        # On the command line a path is relative to the shell's folder; an empty one is left to the check.
        overrides["home"] = os.path.abspath(home) if home else home
    if only:
        overrides["steps"] = list(only)
    if skip:
        overrides["skip"] = list(skip)

    secrets: list[str] = []
    summary_path: Path | None = _termination_log_from_environment()
    try:
        settings = load_settings(overrides, Path(config) if config else None)
        secrets = template_values(settings.template_vars)
        summary_path = settings.termination_log
        report = run(settings, dry_run=dry_run or check)
    except SettingsError as error:
        _fail(EXIT_USAGE, redact(f"invalid settings: {error}", secrets), as_json, (summary_path, started))
    except HomeError as error:
        _fail(EXIT_FAILED, redact(str(error), secrets), as_json, (summary_path, started))
    except Exception as error:  # a bug: still one line, the home's status, never a traceback in the pod log
        message = redact(f"internal error: {type(error).__name__}: {error}", secrets)
        _fail(EXIT_FAILED, message, as_json, (summary_path, started))

    if as_json:
        click.echo(report.to_json())
        for line in report.human_lines(previews=False, verbose=verbose):
            click.echo(line, err=True)
    else:
        for line in report.human_lines(previews=dry_run or check, verbose=verbose):
            click.echo(redact(line, secrets))

    status = 0
    if strict and not report.ok:
        status = EXIT_FAILED
    elif check and report.changes:
        status = EXIT_PENDING
    termination.write(summary_path, _summary(report, status, time.monotonic() - started, secrets))
    if status:
        sys.exit(status)


def _summary(report: Report, status: int, seconds: float, secrets: list[str]) -> str:
    """The kubelet's one line about this run (berdl_init.termination); a --strict failure's error names
    each failed step and why."""
    failed = [step for step in report.steps if step.status == "failed"]
    error = "; ".join(f"{step.name}: {step.message}" for step in failed) if status == EXIT_FAILED else None
    return termination.summary(
        exit_status=status,
        seconds=seconds,
        changes=len(report.changes),
        warnings=len(report.warnings),
        failed_steps=[step.name for step in failed],
        error=redact(error, secrets) if error is not None else None,
    )


def template_values(value: Any) -> list[str]:
    """The strings in BERDL_TEMPLATE_VARS, longest first: they may be secrets, so no output shows them
    (a dry run's diffs and template errors would otherwise print them)."""
    if isinstance(value, str):
        return [value] if len(value) >= 4 else []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return sorted({text for item in items for text in template_values(item)}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _fail(status: int, message: str, as_json: bool, summary: tuple[Path | None, float]) -> None:
    """The run stops here: its one line (and the --json error object), the kubelet's summary, `status`."""
    if as_json:
        click.echo(json.dumps({"version": __version__, "ok": False, "error": message, "exit_status": status}))
    click.echo(f"berdl-init: {message}", err=True)
    path, started = summary
    line = termination.summary(exit_status=status, seconds=time.monotonic() - started, error=message)
    termination.write(path, line)
    sys.exit(status)


def _termination_log_from_environment() -> Path | None:
    """Where the summary goes when the settings cannot be loaded (that is the failure to report):
    BERDL_TERMINATION_LOG as it is set, else Kubernetes' default."""
    value = os.environ.get("BERDL_TERMINATION_LOG", termination.DEFAULT_PATH)
    return Path(value) if value and os.path.isabs(value) else None
