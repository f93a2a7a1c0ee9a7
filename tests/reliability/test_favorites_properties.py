"""Properties of the favorites merge, for any settings document the extension accepts.

The documents are drawn from favorites.schema.json's shape (the extension's settings, written for these
tests); strings include lone surrogates, which a JSON file can hold as "\\ud800" escapes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berdl_init.steps.favorites import SCHEMA_KEYS, dump_settings, merge, parse_settings

SCHEMA = json.loads((Path(__file__).parent / "favorites.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

PROPERTIES = settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Any text, lone surrogates included; a few values recur so that entries collide.
text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(["", "/", "home/alice", "data", "~/work", "/home/alice"]),
)
roots = st.one_of(st.sampled_from(["/", "/home/alice", "~/work"]), text)


def user_entry(pool: list[tuple[str, str]]) -> st.SearchStrategy[dict[str, Any]]:
    """An entry as JupyterLab or the user wrote it; its (root, path) is often one of `pool`'s."""
    optional = {
        "name": text,
        "contentType": st.sampled_from(["directory", "file", "notebook"]) | text,
        "iconLabel": text,
        "default": st.booleans(),
        "hidden": st.booleans(),
    }
    fresh = st.fixed_dictionaries({"path": text}, optional={"root": roots, **optional})
    if not pool:
        return fresh
    collide = st.sampled_from(pool).flatmap(
        lambda key: st.fixed_dictionaries(
            {"root": st.just(key[0]), "path": st.just(key[1])}, optional=optional
        )
    )
    return st.one_of(fresh, collide)


def wanted_entry() -> st.SearchStrategy[dict[str, Any]]:
    """An entry as berdl-init's configured_favorites() makes it."""
    return st.builds(
        lambda root, path, name: {
            "root": root,
            "path": path,
            "contentType": "directory",
            "iconLabel": "ui-components:folder",
            "name": name,
            "default": True,
        },
        roots,
        text,
        text.filter(bool),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    wanted = draw(st.lists(wanted_entry(), max_size=6))
    pool = [(entry["root"], entry["path"]) for entry in wanted]
    document = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "favorites": st.lists(user_entry(pool), max_size=8),
                "showWidget": st.booleans(),
                "showStarsOnCells": st.sampled_from(["allCells", "onlyFavoriteCells", "never"]),
                "sortOrder": st.sampled_from(["unsorted", "name", "path"]),
                "groupByType": st.booleans(),
            },
        )
    )
    return document, wanted


def key(entry: dict[str, Any]) -> tuple[Any, Any]:
    return entry.get("root"), entry.get("path")


def test_the_schema_is_the_extension_s() -> None:
    """The schema's top-level keys are the ones the step allows, and it refuses a stray key."""
    assert set(SCHEMA["properties"]) == SCHEMA_KEYS
    assert not VALIDATOR.is_valid({"favorites": [], "theme": "dark"})
    assert not VALIDATOR.is_valid({"favorites": [{"name": "no path"}]})
    assert VALIDATOR.is_valid({"favorites": [{"path": ""}], "sortOrder": "name"})


@PROPERTIES
@given(cases())
def test_merge_keeps_the_user_s_entries_and_keys_and_adds_each_missing_favorite_once(case) -> None:
    document, wanted = case
    assert VALIDATOR.is_valid(document)
    snapshot = json.loads(json.dumps(document))
    merged, added = merge(document, wanted)

    assert document == snapshot, "merge changed its input"
    user = document.get("favorites", [])
    assert merged["favorites"][: len(user)] == user
    assert {k: v for k, v in merged.items() if k != "favorites"} == {
        k: v for k, v in document.items() if k != "favorites"
    }
    assert merged["favorites"][len(user) :] == added

    present = {key(entry) for entry in user}
    expected = []
    for entry in wanted:
        if key(entry) not in present and key(entry) not in {key(e) for e in expected}:
            expected.append(entry)
    assert added == expected
    for entry in wanted:
        count = sum(1 for e in merged["favorites"] if key(e) == key(entry))
        assert count == max(1, sum(1 for e in user if key(e) == key(entry)))
    hidden = [e for e in user if e.get("hidden")]
    assert all(e in merged["favorites"] for e in hidden)


@PROPERTIES
@given(cases())
def test_merge_is_idempotent_and_its_output_passes_the_schema(case) -> None:
    document, wanted = case
    merged, _ = merge(document, wanted)
    again, added = merge(merged, wanted)
    assert added == []
    assert again == merged
    VALIDATOR.validate(merged)


@PROPERTIES
@given(cases())
def test_what_is_written_reads_back_the_same_as_strict_json(case) -> None:
    document, wanted = case
    merged, _ = merge(document, wanted)
    data = dump_settings(merged)
    assert not data.endswith(b"\n")
    assert json.loads(data.decode()) == merged  # strict JSON, valid UTF-8
    assert parse_settings(data) == merged
    if merged.get("favorites"):
        assert data.startswith(b'{\n    "')  # JupyterLab's 4-space indent


def as_jupyterlab_json5(document: dict[str, Any]) -> bytes:
    """The document as JupyterLab writes a settings file: `//` comments above each key, trailing commas,
    characters as they are (JSON.stringify), a surrogate as an escape (the only way to write one)."""
    lines = ["{"]
    for name, value in document.items():
        lines.append(f"    // {name}")
        lines.append(f"    // @jlab-enhanced/favorites:{name}")
        lines.append(f"    {json.dumps(name)}: {json.dumps(value, indent=4, ensure_ascii=False)},")
    lines.append("}")
    text = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", "\n".join(lines))
    return text.encode()


@PROPERTIES
@given(cases())
def test_jupyterlab_s_json5_parses_to_the_same_document(case) -> None:
    document, _ = case
    assert parse_settings(as_jupyterlab_json5(document)) == document
