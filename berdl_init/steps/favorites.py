"""JupyterLab favorites (@jlab-enhanced/favorites): add the configured folders, keep everything else.

Facts about the extension (3.5, on JupyterLab 4) that shape this step:
- JupyterLab writes the settings file as JSON5 (comments, trailing commas); it reads strict JSON too.
- A top-level key that the extension's schema does not allow makes JupyterLab ignore the whole file.
- A favorite shows only when its `root` equals, as a string, the root the server reports: "/" for a
  server rooted at /, the absolute path for one rooted at the home, "~/sub" for one rooted below it.
- A default favorite the user removed stays in the file with `hidden: true`: it must not come back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from berdl_init.errors import UnsafePathError
from berdl_init.plan import PlanContext, StepPlan, WriteFile, kept_mode

SETTINGS_FILE = ".jupyter/lab/user-settings/@jlab-enhanced/favorites/favorites.jupyterlab-settings"

#: JSON5 is parsed in pure Python (about 5 s per MiB): a bigger file that is not strict JSON is left alone.
MAX_JSON5_BYTES = 512 * 1024

#: The top-level keys the extension's settings schema allows (additionalProperties is false).
SCHEMA_KEYS = frozenset({"favorites", "showWidget", "showStarsOnCells", "sortOrder", "groupByType"})


def plan(ctx: PlanContext) -> StepPlan:
    step = StepPlan("favorites")
    wanted = configured_favorites(ctx, step.warnings)
    try:
        data = ctx.home.read(SETTINGS_FILE)
    except UnsafePathError as error:
        step.warnings.append(f"{error}; the favorites are left as they are")
        return step

    document: dict[str, Any] = {}
    if data is not None:
        try:
            document = parse_settings(data)
        except ValueError as error:
            step.warnings.append(f"~/{SETTINGS_FILE} cannot be read ({error}); it is left as it is")
            return step
    stray = sorted(set(document) - SCHEMA_KEYS)
    if stray:
        # Writing it would give JupyterLab a file it ignores still; dropping the keys would lose the user's.
        step.warnings.append(
            f"~/{SETTINGS_FILE} has keys the favorites extension does not allow ({', '.join(stray)}), "
            "so JupyterLab ignores the file; it is left as it is"
        )
        return step

    merged, added = merge(document, wanted)
    if added:
        names = ", ".join(entry["name"] for entry in added)
        if data is not None:
            step.notes.append(f"your JupyterLab favorites stay, {names} added")
        step.changes.append(
            WriteFile(
                "write",
                SETTINGS_FILE,
                f"add {names}",
                data=dump_settings(merged),
                mode=0o644 if data is None else kept_mode(ctx.home, SETTINGS_FILE, 0o644),
                old=data,
                remember=False,
            )
        )
    return step


def configured_favorites(ctx: PlanContext, warnings: list[str]) -> list[dict[str, Any]]:
    """The favorite entries the settings ask for, in the form the extension stores them."""
    settings = ctx.settings
    root_path = settings.favorites_root_path()
    root = server_root(root_path, settings.home)
    entries = []
    for favorite in settings.favorites or []:
        path = Path(os.path.normpath(favorite.path))
        if path != root_path and not path.is_relative_to(root_path):
            warnings.append(f"favorite {favorite.path} is outside the JupyterLab root {root_path}; skipped")
            continue
        if not _folder_exists(ctx, path):
            warnings.append(f"favorite {favorite.path} does not exist; skipped")
            continue
        relative = path.relative_to(root_path).as_posix()
        entries.append(
            {
                "root": root,
                "path": "" if relative == "." else relative,
                "contentType": "directory",
                "iconLabel": "ui-components:folder",
                "name": favorite.name,
                "default": True,
            }
        )
    return entries


def server_root(root_path: Path, home: Path) -> str:
    """The root string the JupyterLab server reports for `root_path`, which favorites must match."""
    if root_path != home and root_path.is_relative_to(home):
        return "~/" + root_path.relative_to(home).as_posix()
    return str(root_path)


def _folder_exists(ctx: PlanContext, path: Path) -> bool:
    settings = ctx.settings
    if path == settings.home:
        return True  # the run creates it when it is missing
    if path.is_relative_to(settings.home):
        try:
            st = ctx.home.lstat(path.relative_to(settings.home).as_posix())
        except OSError:
            return False
        return st is not None and path.is_dir()
    return path.is_dir()


def merge(
    document: dict[str, Any], wanted: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`document` with the wanted favorites it lacks appended, and the list of those appended.

    A favorite is identified by (root, path). Entries already there are kept exactly as they are,
    `hidden: true` included, and so is every other key.
    """
    favorites = list(document.get("favorites", []))
    present = {(entry.get("root"), entry.get("path")) for entry in favorites if isinstance(entry, dict)}
    missing = []
    for entry in wanted:
        key = (entry["root"], entry["path"])
        if key not in present:
            present.add(key)
            missing.append(entry)
    return {**document, "favorites": favorites + missing}, missing


def parse_settings(data: bytes) -> dict[str, Any]:
    """A JupyterLab settings file: strict JSON when berdl-init wrote it, JSON5 when JupyterLab did."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError:
        if len(data) > MAX_JSON5_BYTES:
            raise ValueError(f"{len(data)} bytes of JSON5, more than the {MAX_JSON5_BYTES} read") from None
        import json5

        try:
            document = json5.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        except ValueError as error:
            raise ValueError(f"not JSON5: {error}") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if not isinstance(document.get("favorites", []), list):
        raise ValueError("'favorites' is not a list")
    return document


def dump_settings(document: dict[str, Any]) -> bytes:
    """Strict JSON in JupyterLab's own layout: 4-space indent, no final newline.

    A lone surrogate (a "\\ud800" escape in the user's file) has no UTF-8 form: then every non-ASCII
    character is written as an escape, which reads back the same.
    """
    try:
        return json.dumps(document, indent=4, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(document, indent=4).encode()
