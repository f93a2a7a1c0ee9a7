"""Checks of BERDLSpawner settings that only make sense together, run when the hub loads its config.

A trait validator sees one value at a time, in whatever order the configuration sets them; these checks
need several. `problems()` takes plain values (tested without a spawner); `check_config()` gathers them
from the hub's configuration as a spawner class would read it, and refuses it with every problem named.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from traitlets.config.loader import LazyConfigValue

from . import manifest, notebook_env


class SpawnerConfigError(ValueError):
    """The spawner's settings do not fit together; one problem per line, each naming its settings."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"BERDLSpawner settings refused, {len(problems)} problem(s):\n{lines}")


def init_as_root(setting: bool | None, home_volume_type: str, home_host_path_type: str) -> bool:
    """Whether berdl-init starts as root: as set, else exactly for a hostPath home of type
    DirectoryOrCreate, which the kubelet creates as root:root 0755."""
    if setting is not None:
        return setting
    return home_volume_type == "hostPath" and home_host_path_type == "DirectoryOrCreate"


def timing_problem(
    *, start_timeout: float, spark_create_timeout: float, spark_enabled: bool, init_time_budget: float
) -> str | None:
    """Whether the bounded steps of a start leave room in start_timeout."""
    # The spawn waits for the Spark cluster, then for the pod: its image pulls, berdl-init runs (a first
    # venv build, after an image upgrade the bounded package restore), the notebook starts. All of that
    # happens inside start_timeout; what is left after the two bounded steps is for the image pull.
    needed = init_time_budget + (spark_create_timeout if spark_enabled else 0.0)
    if needed < start_timeout:
        return None
    parts = f"init_time_budget {init_time_budget:g} s"
    if spark_enabled:
        parts = f"spark_create_timeout {spark_create_timeout:g} s + {parts}"
    return (
        f"start_timeout {start_timeout:g} s must be longer than {parts} = {needed:g} s, "
        "with room left for an image pull"
    )


def restore_timeout_problem(init_environment: Mapping[str, str], init_time_budget: float) -> str | None:
    """Whether an operator's BERDL_VENV_RESTORE_TIMEOUT in init_environment stays within init_time_budget.

    The spawner derives berdl-init's restore bound from init_time_budget, which the start_timeout check
    counts; a bound set directly would escape that check, and a spawn would time out mid-restore."""
    text = init_environment.get("BERDL_VENV_RESTORE_TIMEOUT")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return f"init_environment BERDL_VENV_RESTORE_TIMEOUT must be seconds, got {text!r}"
    bound = manifest.restore_timeout(init_time_budget)
    if value <= bound:
        return None
    return (
        f"init_environment BERDL_VENV_RESTORE_TIMEOUT {value:g} s is longer than the {bound:g} s that "
        f"init_time_budget {init_time_budget:g} s leaves for the package restore; raise init_time_budget "
        "instead (the spawner derives the restore's bound from it)"
    )


def uid_problem(uid: Any, init_as_root: bool) -> str | None:
    """uid None means the image's user (KubeSpawner): berdl-init then gives the home to no one, which is
    only safe when it does not start as root."""
    if uid is not None or not init_as_root:
        return None
    return (
        "uid None (the image's user) cannot be used while berdl-init runs as root (a hostPath home of "
        "type DirectoryOrCreate, or init_runs_as_root): the new home would stay root's; set uid and gid, "
        "or use a home that berdl-init prepares as the user"
    )


def problems(
    *,
    start_timeout: float,
    spark_create_timeout: float,
    spark_enabled: bool,
    init_time_budget: float,
    uid: Any,
    init_as_root: bool,
    init_environment: Mapping[str, str] | None = None,
) -> list[str]:
    """What is wrong with these values together (empty when nothing is)."""
    found = [
        timing_problem(
            start_timeout=start_timeout,
            spark_create_timeout=spark_create_timeout,
            spark_enabled=spark_enabled,
            init_time_budget=init_time_budget,
        ),
        uid_problem(uid, init_as_root),
        restore_timeout_problem(init_environment or {}, init_time_budget),
    ]
    return [problem for problem in found if problem]


_CHECKED = (
    "start_timeout",
    "spark_create_timeout",
    "spark_cluster_manager_url",
    "init_time_budget",
    "uid",
    "init_runs_as_root",
    "home_volume_type",
    "home_host_path_type",
    "init_environment",
)


def configured(cls: type, config: Any, name: str, own_defaults: Mapping[str, Any]) -> Any:
    """The value an instance of `cls` would get for `name` from `config`: traitlets reads the sections
    of the class and of its parents, the most derived winning, over the class's default (`own_defaults`
    for those it computes with @default rather than declares); a section's `.extend()` or `.update()`
    of a list or dict (a LazyConfigValue) applies to the value before it."""
    traits = cls.class_traits()  # type: ignore[attr-defined]
    value = own_defaults[name] if name in own_defaults else traits[name].default()
    for klass in reversed(cls.mro()):
        section = klass.__name__
        if section in config and name in config[section]:
            setting = config[section][name]
            value = setting.get_value(value) if isinstance(setting, LazyConfigValue) else setting
    return value


def check_config(cls: type, config: Any, own_defaults: Mapping[str, Any]) -> None:
    """Raise SpawnerConfigError when the settings `config` gives a `cls` spawner do not fit together."""
    values = {name: configured(cls, config, name, own_defaults) for name in _CHECKED}
    as_root = init_as_root(
        values["init_runs_as_root"], values["home_volume_type"], values["home_host_path_type"]
    )
    found = problems(
        start_timeout=values["start_timeout"],
        spark_create_timeout=values["spark_create_timeout"],
        spark_enabled=bool(values["spark_cluster_manager_url"]),
        init_time_budget=values["init_time_budget"],
        uid=values["uid"],
        init_as_root=as_root,
        init_environment=values["init_environment"],
    )
    if found:
        raise SpawnerConfigError(found)


def notebook_settings_missing(cls: type, config: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """The settings the notebook needs (notebook_env.NOTEBOOK_NEEDS) that no user pod of spawner class
    `cls` would get from `config` and the hub's environment: the hub warns of them once, at its start."""
    forward = configured(cls, config, "hub_env_to_forward", {})
    environment = configured(cls, config, "environment", {})
    return notebook_env.missing(forward, environment, os.environ if environ is None else environ)
