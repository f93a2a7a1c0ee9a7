"""A misspelt BERDL_ variable is named in a warning, with the closest setting; the run goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from berdl_init.settings import unknown_variables
from localhub.tools import REPO
from tests.init.homes import berdl_init, fake_home


@pytest.fixture
def home(fs, clean_env):
    return fake_home(fs, clean_env)


def test_a_typo_is_named_with_the_closest_setting_and_the_run_goes_on(home: Path, clean_env) -> None:
    clean_env.setenv("BERDL_VENV_PYHTON", "/opt/conda/bin/python3")

    result = berdl_init("--json")

    assert result.exit_code == 0
    assert result.report["ok"] is True
    assert result.report["warnings"] == [
        "BERDL_VENV_PYHTON is not a berdl-init setting and is ignored; did you mean BERDL_VENV_PYTHON?"
    ]
    assert (home / ".bashrc").is_file()


def test_a_name_like_no_setting_is_named_without_a_guess() -> None:
    assert unknown_variables({"BERDL_ZZZZZZZZZZZZZZ": "1"}) == [
        "BERDL_ZZZZZZZZZZZZZZ is not a berdl-init setting and is ignored"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "BERDL_HUB_BIND_URL",
        "BERDL_HUB_ANYTHING_NEW",
        "BERDL_IDLE_TIMEOUT",
        "BERDL_NOTEBOOK_IMAGE",
        "BERDL_INIT_IMAGE",
        "BERDL_TEST_USERS",
        "BERDL_HOME",
        "BERDL_VENV_PYTHON",
        "BERDL_SKIP",
        "OTHER_VENV_PYHTON",
    ],
)
def test_the_projects_own_names_are_no_typos(name: str) -> None:
    assert unknown_variables({name: "x"}) == []


def test_every_berdl_name_the_hub_side_reads_is_known() -> None:
    """The hub, its deployment and the image builds share the pod's BERDL_ namespace."""
    import re

    repo = REPO
    sources = [
        *repo.joinpath("hub").rglob("*.py"),
        *repo.joinpath("deploy").rglob("*.yaml"),
        *repo.joinpath("images").iterdir(),
        *repo.glob("Dockerfile.*"),
    ]
    names = {
        name
        for path in sources
        if path.is_file()
        for name in re.findall(r"\bBERDL_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace"))
    }
    assert names, "no BERDL_ name found: the search looks in the wrong place"
    assert unknown_variables(dict.fromkeys(names, "x")) == []
