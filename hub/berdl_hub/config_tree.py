"""The operator's settings tree: a YAML file of traitlet values nested by class, as z2jh's `hub.config`.

    BERDLSpawner:
      start_timeout: 300
    Authenticator:
      admin_users: [alice]

The file is read with PyYAML and handed to traitlets as a `Config`, which JupyterHub then applies to each
class by its name (and to its subclasses, a subclass's own section winning). Nothing here interprets the
values: a trait JupyterHub does not know is reported by JupyterHub's own warning at start.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from traitlets.config import Config


class TreeError(ValueError):
    """The tree cannot be used; the message is one line naming the file and what is wrong."""


def read(path: str) -> Config:
    """The tree in `path` as a traitlets Config; TreeError when it is not YAML of classes and traits."""
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise TreeError(f"{path}: cannot be read ({error.strerror})") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise TreeError(f"{path}: not valid YAML{at}: {getattr(error, 'problem', None) or error}") from None
    if tree is None:
        return Config()
    if not isinstance(tree, dict):
        raise TreeError(f"{path}: must be a mapping of class names to their settings")
    for name, section in tree.items():
        # traitlets takes a capitalised key as a class's section; anything else would be silently dropped.
        if not (isinstance(name, str) and name.isidentifier() and name[0].isupper()):
            raise TreeError(f"{path}: {name!r} is not a class name (e.g. BERDLSpawner, JupyterHub)")
        if not isinstance(section, dict):
            raise TreeError(f"{path}: {name} must map trait names to values, got {type(section).__name__}")
    return Config(tree)
