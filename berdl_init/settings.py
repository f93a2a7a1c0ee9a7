"""Settings: environment variables with the prefix BERDL_, an optional TOML file, and the command line.

Precedence, highest first: the command line, the environment, the `--config` file, the defaults.
Every value is checked here, before anything in the home is touched; a bad one becomes a SettingsError
whose one line names the setting, the value and what is expected.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal

import pydantic_settings
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from berdl_init import termination
from berdl_init.errors import SettingsError

StepName = Literal["dirs", "dotfiles", "venv", "favorites"]
STEP_ORDER: tuple[StepName, ...] = ("dirs", "dotfiles", "venv", "favorites")

PACKAGED_TEMPLATES = Path(__file__).parent / "templates" / "dotfiles"

#: The longest package restore berdl-init accepts (BERDL_VENV_RESTORE_TIMEOUT, seconds). The hub keeps
#: the same bound (berdl_hub.manifest.MAX_RESTORE_TIMEOUT; tests/hub check that they agree).
MAX_VENV_RESTORE_TIMEOUT = 3600.0

#: Template variables berdl-init provides itself; BERDL_TEMPLATE_VARS may not redefine them.
RESERVED_TEMPLATE_VARS = frozenset({"user", "home", "venv_dir", "venv_python"})

#: Settings whose values may hold secrets: their values are never echoed in an error.
_REDACTED = frozenset({"template_vars"})

#: BERDL_ variables that other parts of the project read (the hub, its deployment, the image builds and
#: the tests): a pod's environment may hold them, and they are not misspelt berdl-init settings.
OTHER_PARTS_PREFIXES = ("BERDL_HUB_", "BERDL_TEST_")
OTHER_PARTS_NAMES = frozenset(
    {
        "BERDL_IDLE_TIMEOUT",
        "BERDL_CULL_EVERY",
        "BERDL_NOTEBOOK_IMAGE",
        "BERDL_INIT_IMAGE",
        "BERDL_DEBIAN_MIRROR",
        "BERDL_WORK_DIR",
        "BERDL_PODMAN_DIR",
        # The notebook container's (BERDL's notebook image and its JupyterLab extensions read them; the
        # hub's spawner sets them, never in berdl-init's container).
        "BERDL_POD_IP",
        "BERDL_POD_NAME",
        "BERDL_CPU_REQUEST",
        "BERDL_CPU_LIMIT",
        "BERDL_MEMORY_REQUEST",
        "BERDL_MEMORY_LIMIT",
        "BERDL_PROFILE_JSON",
        "BERDL_HIVE_METASTORE_URI",
        "BERDL_REDIS_HOST",
        "BERDL_REDIS_PORT",
    }
)


def _default_home() -> Path:
    return Path(os.environ.get("HOME", ""))


#: The variables that name the user when BERDL_USER does not (JupyterHub sets the first in a pod).
USER_VARIABLES = ("JUPYTERHUB_USER", "NB_USER")


def _default_user() -> str:
    """$JUPYTERHUB_USER, $NB_USER, else the login name. As root, the runner replaces the login name (root's)
    by the name of the user who will own what is created (`Settings.for_user`)."""
    for variable in USER_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    import getpass  # imported here: only needed when no variable names the user, and slow to import

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # an arbitrary uid with no passwd entry and no $USER
        return ""  # refused by the user-name check, which names BERDL_USER


def base_interpreter() -> Path:
    """The interpreter under the one running berdl-init: a venv must be built on a base interpreter."""
    return Path(getattr(sys, "_base_executable", None) or sys.executable)


class Favorite(BaseModel):
    """One folder to add to the JupyterLab favorites."""

    model_config = ConfigDict(extra="forbid")

    path: str
    name: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError("the favorite's path must be absolute")
        if "\0" in value:
            raise ValueError("the favorite's path holds a NUL character, which no path can")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BERDL_", extra="forbid", validate_default=True)

    #: Set by load_settings() on a subclass when a --config file is given.
    config_file: ClassVar[Path | None] = None

    home: Path = Field(default_factory=_default_home)
    user: str = Field(default_factory=_default_user)
    uid: int | None = Field(default=None, ge=0)
    gid: int | None = Field(default=None, ge=0)
    steps: Annotated[list[StepName], NoDecode] = Field(default_factory=lambda: list(STEP_ORDER))
    #: Steps taken out of `steps` (--skip on the command line).
    skip: Annotated[list[StepName], NoDecode] = Field(default_factory=list)
    templates_dir: Path = PACKAGED_TEMPLATES
    template_vars: dict[str, Any] = Field(default_factory=dict)
    venv_dir: Path | None = None
    venv_python: Path = Field(default_factory=base_interpreter)
    venv_system_site_packages: bool = True
    #: After a rebuild on a new Python, install again what the user had installed in the old venv.
    venv_restore: bool = True
    #: How long that may take, in seconds: it runs inside the pod's start.
    venv_restore_timeout: float = Field(default=120.0, gt=0, le=MAX_VENV_RESTORE_TIMEOUT)
    favorites: list[Favorite] | None = None
    favorites_root: str = "/"
    #: Where the run's one-line summary goes for the kubelet (berdl_init.termination); empty: nowhere.
    termination_log: Path | None = Path(termination.DEFAULT_PATH)
    #: The user name a home was recorded for before its account was renamed: a run for `user` on a home
    #: recorded for this name takes the home over (berdl_init/homeowner.py).
    renamed_from: str | None = None

    #: The user is this process's login name (no setting or variable named them): as root, that is root's.
    _user_is_login_name: bool = PrivateAttr(default=False)
    #: BERDL_VENV_DIR is its default, which follows the user's name.
    _default_venv_dir: bool = PrivateAttr(default=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.config_file))
        return tuple(sources)

    @field_validator("home", "templates_dir", "venv_dir", "venv_python", "termination_log", mode="before")
    @classmethod
    def _absolute_path(cls, value: Any) -> Any:
        # Converted here rather than by pydantic, which would keep a reference to the Path class it saw
        # when the model was built (pyfakefs swaps that class during the unit tests).
        if value is None or not isinstance(value, (str, os.PathLike)):
            return value
        text = os.fspath(value)
        if not text:
            raise ValueError("is empty; an absolute path is expected")
        if not os.path.isabs(text):
            raise ValueError("is not absolute; an absolute path is expected")
        if "\0" in text:
            raise ValueError("holds a NUL character, which no path can")
        return Path(os.path.normpath(text))

    @field_validator("termination_log", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # Runs before _absolute_path (pydantic runs the later-defined "before" validator first).
        return None if value == "" else value

    @field_validator("user")
    @classmethod
    def _user_name(cls, value: str) -> str:
        return _usable_user_name(value)

    @field_validator("renamed_from")
    @classmethod
    def _old_user_name(cls, value: str | None) -> str | None:
        return None if value is None else _usable_user_name(value)

    @field_validator("steps", "skip", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("steps")
    @classmethod
    def _canonical_order(cls, value: list[StepName]) -> list[StepName]:
        return [step for step in STEP_ORDER if step in value]

    @field_validator("template_vars")
    @classmethod
    def _no_reserved_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(RESERVED_TEMPLATE_VARS & value.keys())
        if clash:
            raise ValueError(f"redefines {', '.join(clash)}, which berdl-init provides itself")
        return value

    @field_validator("favorites_root")
    @classmethod
    def _root_form(cls, value: str) -> str:
        if not (value.startswith("/") or value.startswith("~/")):
            raise ValueError(
                "must be an absolute path or ~/FOLDER, as the JupyterLab server reports its root"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> Settings:
        """Settings that depend on others, checked in order: steps first, since they decide what is needed."""
        self.steps = [step for step in self.steps if step not in self.skip]
        self._user_is_login_name = "user" not in self.model_fields_set and not any(
            os.environ.get(variable) for variable in USER_VARIABLES
        )
        self._default_venv_dir = self.venv_dir is None
        if self.venv_dir is None:
            self.venv_dir = _default_venv_dir(self.home, self.user)
        if self.favorites is None:
            self.favorites = [Favorite(path=str(self.home), name="Home")]
        if self.venv_dir == self.home or not self.venv_dir.is_relative_to(self.home):
            raise ValueError(f"BERDL_VENV_DIR={str(self.venv_dir)!r}: must be a folder inside BERDL_HOME")
        if "dotfiles" in self.steps and not self.templates_dir.is_dir():
            raise ValueError(f"BERDL_TEMPLATES_DIR={str(self.templates_dir)!r}: no such folder")
        if "venv" in self.steps:
            _check_interpreter(self.venv_python)
        return self

    @property
    def user_is_login_name(self) -> bool:
        """No setting or variable named the user: `user` is the login name of the process."""
        return self._user_is_login_name

    def for_user(self, user: str) -> Settings:
        """These settings for the user `user`, the default venv's name following: as root, berdl-init names
        the user after the owner it becomes, which it learns only after the settings are loaded."""
        named = self.model_copy(update={"user": _usable_user_name(user)})
        named._user_is_login_name = False
        if self._default_venv_dir:
            named.venv_dir = _default_venv_dir(self.home, named.user)
        return named

    @property
    def venv_rel(self) -> str:
        """The venv's path relative to the home."""
        assert self.venv_dir is not None
        return self.venv_dir.relative_to(self.home).as_posix()

    def favorites_root_path(self) -> Path:
        """The folder the JupyterLab server serves, as an absolute path."""
        if self.favorites_root.startswith("~/"):
            return self.home / self.favorites_root[2:]
        return Path(self.favorites_root)


def _usable_user_name(value: str) -> str:
    if not value or "/" in value or "\0" in value or value in {".", ".."}:
        raise ValueError("is not a usable user name (it is used in file names)")
    return value


def _default_venv_dir(home: Path, user: str) -> Path:
    return home / ".virtualenvs" / "envs" / f"{user}_default_env"


def _check_interpreter(python: Path) -> None:
    prefix = f"BERDL_VENV_PYTHON={str(python)!r}"
    if not python.is_file() or not os.access(python, os.X_OK):
        raise ValueError(f"{prefix}: no such executable file")
    if (python.parent.parent / "pyvenv.cfg").exists():
        raise ValueError(f"{prefix}: is a virtualenv's python; a base interpreter is expected")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each BERDL_ variable that is no setting of berdl-init nor another part's: a typo
    (BERDL_VENV_PYHTON) would otherwise be ignored without a word. Named with the closest setting."""
    known = sorted(f"BERDL_{name.upper()}" for name in Settings.model_fields)
    warnings = []
    for name in sorted(environ):
        if not name.startswith("BERDL_") or name in known or name in OTHER_PARTS_NAMES:
            continue
        if name.startswith(OTHER_PARTS_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a berdl-init setting and is ignored{hint}")
    return warnings


def load_settings(overrides: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Settings from the command line's `overrides`, the environment and `config_file`.

    Raises SettingsError with a one-line message.
    """
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"--config {config_file}: no such file")
        settings_cls = type("FileSettings", (Settings,), {"config_file": config_file})
    try:
        return settings_cls(**overrides)
    except ValidationError as error:
        raise SettingsError(describe(error)) from None
    except pydantic_settings.SettingsError as error:  # a list or object setting that is not JSON
        raise SettingsError(_describe_unparsable(str(error))) from None
    except ValueError as error:  # a malformed TOML file
        raise SettingsError(f"--config {config_file}: {str(error).splitlines()[0]}") from None
    except RecursionError:  # a JSON value nested thousands deep
        raise SettingsError(f"{_too_deep()}: nested too deeply to be read") from None


def _too_deep() -> str:
    """The environment variable whose JSON cannot be read without running out of stack, else --config."""
    for name in ("BERDL_FAVORITES", "BERDL_TEMPLATE_VARS"):
        try:
            json.loads(os.environ.get(name, "0"))
        except RecursionError:
            return name
        except ValueError:
            pass
    return "--config"


def describe(error: ValidationError) -> str:
    """One line naming each bad setting, its value and what is expected."""
    problems = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        loc = [str(part) for part in item["loc"]]
        if not loc:  # a model validator names its setting in the message itself
            problems.append(message)
            continue
        name = f"BERDL_{loc[0].upper()}"
        where = "".join(f"[{part}]" for part in loc[1:])
        if loc[0] in _REDACTED:
            problems.append(f"{name}{where}: {message}")
        elif item["type"] == "extra_forbidden" and len(loc) > 1:  # a key inside a setting's value
            problems.append(f"{name}{where}: not a known key")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{loc[0]}: unknown setting")
        else:
            problems.append(f"{name}{where}={_shown(item.get('input'))}: {message}")
    return "; ".join(problems)


def _describe_unparsable(message: str) -> str:
    match = re.search(r'field "(\w+)"', message)
    if match is None:
        return message.splitlines()[0]
    field = match.group(1)
    name = f"BERDL_{field.upper()}"
    if field in _REDACTED or name not in os.environ:
        return f"{name}: not valid JSON"
    return f"{name}={_shown(os.environ[name])}: not valid JSON"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text if len(text) <= 200 else text[:200] + "...")
