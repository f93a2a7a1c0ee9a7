"""The favorites step: JSON5 in, strict JSON out, every user entry and key kept, `hidden` respected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from berdl_init.steps.favorites import merge, parse_settings, server_root
from tests.init.homes import FAVORITES_FILE, HOME, berdl_init

OURS = {"contentType": "directory", "iconLabel": "ui-components:folder", "default": True}


@pytest.fixture
def home(fs, clean_env):
    fs.create_dir(HOME)
    fs.create_dir("/shared/data")
    clean_env.setenv("BERDL_HOME", str(HOME))
    clean_env.setenv("BERDL_USER", "alice")
    clean_env.setenv("BERDL_UID", str(os.getuid()))
    clean_env.setenv("BERDL_GID", str(os.getgid()))
    clean_env.setenv("BERDL_STEPS", "favorites")
    return HOME


def favorites_file() -> dict:
    return json.loads(FAVORITES_FILE.read_text())


def test_jupyterlab_json5_with_comments_and_trailing_commas_is_merged(home: Path, clean_env) -> None:
    FAVORITES_FILE.parent.mkdir(parents=True)
    FAVORITES_FILE.write_text(
        """{
    // Favorites
    // @jlab-enhanced/favorites:favorites
    "favorites": [
        {"root": "/", "path": "home/alice/notes", "name": "notes", "contentType": "directory",},
    ],
    "showWidget": true,
    "sortOrder": "path", // user's choice
}"""
    )
    clean_env.setenv(
        "BERDL_FAVORITES",
        '[{"path": "/home/alice", "name": "Home"}, {"path": "/shared/data", "name": "Data"}]',
    )

    result = berdl_init("--json")

    assert result.exit_code == 0
    assert result.report["changes"][0]["detail"] == "add Home, Data"
    assert favorites_file() == {
        "favorites": [
            {"root": "/", "path": "home/alice/notes", "name": "notes", "contentType": "directory"},
            {"root": "/", "path": "home/alice", "name": "Home", **OURS},
            {"root": "/", "path": "shared/data", "name": "Data", **OURS},
        ],
        "showWidget": True,
        "sortOrder": "path",
    }


def test_a_removed_default_stays_hidden_and_the_file_is_not_rewritten(home: Path) -> None:
    FAVORITES_FILE.parent.mkdir(parents=True)
    text = (
        "{\n    // hidden by the user\n"
        '    "favorites": [{"root": "/", "path": "home/alice", "hidden": true, "default": true}],\n}'
    )
    FAVORITES_FILE.write_text(text)

    result = berdl_init("--json")

    assert result.report["changes"] == []
    assert FAVORITES_FILE.read_text() == text


def test_an_existing_entry_is_never_duplicated_or_changed(home: Path) -> None:
    FAVORITES_FILE.parent.mkdir(parents=True)
    FAVORITES_FILE.write_text('{"favorites": [{"root": "/", "path": "home/alice", "name": "My home"}]}')

    assert berdl_init().exit_code == 0

    assert favorites_file()["favorites"] == [{"root": "/", "path": "home/alice", "name": "My home"}]


def test_an_unparsable_file_is_left_as_it_is_with_a_warning(home: Path) -> None:
    FAVORITES_FILE.parent.mkdir(parents=True)
    FAVORITES_FILE.write_text('{"favorites": [')

    result = berdl_init("--json")

    assert result.exit_code == 0
    assert result.report["changes"] == []
    assert FAVORITES_FILE.read_text() == '{"favorites": ['
    assert any("cannot be read (not JSON5" in warning for warning in result.report["warnings"])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"favorites": {"path": "x"}}', "'favorites' is not a list"),
        (b'{"favorites": [], "x": "\xff"}', "not UTF-8 text"),
    ],
)
def test_a_file_of_the_wrong_shape_is_left_as_it_is(home: Path, content: bytes, reason: str) -> None:
    FAVORITES_FILE.parent.mkdir(parents=True)
    FAVORITES_FILE.write_bytes(content)

    result = berdl_init("--json")

    assert FAVORITES_FILE.read_bytes() == content
    assert any(reason in warning for warning in result.report["warnings"])


def test_a_file_with_a_stray_top_level_key_is_left_as_it_is_and_reported(home: Path) -> None:
    FAVORITES_FILE.parent.mkdir(parents=True)
    FAVORITES_FILE.write_text('{"favorites": [], "theme": "dark"}')

    result = berdl_init("--json")

    assert FAVORITES_FILE.read_text() == '{"favorites": [], "theme": "dark"}'
    assert result.report["changes"] == []
    assert any("does not allow (theme)" in warning for warning in result.report["warnings"])


def test_a_missing_folder_is_skipped_with_a_warning(home: Path, clean_env) -> None:
    clean_env.setenv(
        "BERDL_FAVORITES",
        '[{"path": "/shared/gone", "name": "Gone"}, {"path": "/shared/data", "name": "Data"}]',
    )

    result = berdl_init("--json")

    assert [entry["name"] for entry in favorites_file()["favorites"]] == ["Data"]
    assert "favorites: favorite /shared/gone does not exist; skipped" in result.report["warnings"]


def test_a_favorite_outside_the_root_is_skipped(home: Path, clean_env) -> None:
    clean_env.setenv("BERDL_FAVORITES_ROOT", "/home/alice")
    clean_env.setenv("BERDL_FAVORITES", '[{"path": "/shared/data", "name": "Data"}]')

    result = berdl_init("--json")

    assert not FAVORITES_FILE.exists()
    assert any("outside the JupyterLab root /home/alice" in warning for warning in result.report["warnings"])


@pytest.mark.parametrize(
    ("root_setting", "favorite", "root", "path"),
    [
        ("/", "/home/alice", "/", "home/alice"),
        ("/home/alice", "/home/alice", "/home/alice", ""),
        ("/home/alice", "/home/alice/work", "/home/alice", "work"),
        ("~/work", "/home/alice/work/project", "~/work", "project"),
        ("/home/alice/work", "/home/alice/work/project", "~/work", "project"),
    ],
)
def test_root_and_path_match_what_the_server_reports(
    home: Path, clean_env, root_setting: str, favorite: str, root: str, path: str
) -> None:
    Path("/home/alice/work/project").mkdir(parents=True)
    clean_env.setenv("BERDL_FAVORITES_ROOT", root_setting)
    clean_env.setenv("BERDL_FAVORITES", json.dumps([{"path": favorite, "name": "F"}]))

    assert berdl_init().exit_code == 0

    [entry] = favorites_file()["favorites"]
    assert (entry["root"], entry["path"]) == (root, path)


def test_a_favorites_file_that_is_a_symlink_is_left_alone(home: Path, fs) -> None:
    fs.create_file("/srv/elsewhere.json", contents='{"favorites": []}')
    FAVORITES_FILE.parent.mkdir(parents=True)
    FAVORITES_FILE.symlink_to("/srv/elsewhere.json")

    result = berdl_init("--json")

    assert Path("/srv/elsewhere.json").read_text() == '{"favorites": []}'
    assert FAVORITES_FILE.is_symlink()
    assert any("is a symlink" in warning for warning in result.report["warnings"])


def test_merge_appends_only_what_is_missing_once() -> None:
    ours = {"root": "/", "path": "data", "name": "Data", **OURS}
    document = {"favorites": [{"root": "/", "path": "x"}], "showWidget": False}

    merged, added = merge(document, [ours, dict(ours)])

    assert added == [ours]
    assert merged == {"favorites": [{"root": "/", "path": "x"}, ours], "showWidget": False}
    assert merge(merged, [ours]) == (merged, [])


def test_merge_keeps_non_object_entries() -> None:
    merged, _ = merge({"favorites": ["odd", 3]}, [{"root": "/", "path": "p", "name": "P"}])

    assert merged["favorites"][:2] == ["odd", 3]


def test_parse_settings_reads_strict_json_and_json5() -> None:
    assert parse_settings(b'{"favorites": []}') == {"favorites": []}
    assert parse_settings(b"{favorites: [], // c\n}") == {"favorites": []}


def test_server_root_forms() -> None:
    home = Path("/home/alice")
    assert server_root(Path("/"), home) == "/"
    assert server_root(home, home) == "/home/alice"
    assert server_root(home / "a/b", home) == "~/a/b"
    assert server_root(Path("/srv"), home) == "/srv"
