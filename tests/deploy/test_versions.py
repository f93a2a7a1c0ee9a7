"""One set of versions, the one the tests ran: constraints.txt is what scripts/setup, this test run and
every Dockerfile install with, the hub image's base is the pinned JupyterHub, the notebook image installs
the same JupyterHub for jupyterhub-singleuser, and the deployed proxy is the proxy the tests ran."""

from __future__ import annotations

import json
import re
import shlex
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
DOCKERFILES = ["Dockerfile.hub", "Dockerfile.init", "Dockerfile.notebook"]


def pins() -> dict[str, str]:
    """constraints.txt as {name: version}; every line is a comment or one `name==version`."""
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        found[requirement.name] = specifier.version
    return found


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    parsed = DockerfileParser(fileobj=(REPO / dockerfile).open("rb"))
    return [(i["instruction"], i["value"]) for i in parsed.structure if i["instruction"] != "COMMENT"]


def pip_installs(command: str) -> list[list[str]]:
    """The argument lists of every `pip install` in a shell command."""
    words = shlex.split(command.replace("&&", " ; ").replace("\\\n", " "))
    calls, current = [], None
    for before, word in pairwise(["", *words]):
        if before == "pip" and word == "install":
            current = []
            calls.append(current)
        elif word == ";":
            current = None
        elif current is not None:
            current.append(word)
    return calls


def constraint_files(arguments: list[str]) -> list[str]:
    return [after for before, after in pairwise(arguments) if before in ("-c", "--constraint")]


def test_the_constraints_are_pins_and_the_tests_ran_them() -> None:
    pinned = pins()
    assert {"jupyterhub", "jupyterhub-kubespawner", "psycopg"} <= set(pinned)
    assert {name: version(name) for name in pinned} == pinned


def test_scripts_setup_installs_with_the_constraints() -> None:
    lines = (REPO / "scripts" / "setup").read_text().splitlines()
    installs = [args for line in lines if "pip install" in line for args in pip_installs(line)]
    project = [args for args in installs if "-e" in args]
    assert project, "scripts/setup does not install the project"
    assert all(constraint_files(args) == ["constraints.txt"] for args in project), project


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_pip_install_of_the_images_uses_the_constraints(dockerfile: str) -> None:
    steps = instructions(dockerfile)
    copied = {
        shlex.split(value)[-1].rstrip("/") + ("/constraints.txt" if value.rstrip().endswith("/") else "")
        for instruction, value in steps
        if instruction == "COPY" and "constraints.txt" in shlex.split(value)[:-1]
    }
    assert copied, f"{dockerfile} does not copy constraints.txt"
    installs = [args for instruction, value in steps if instruction == "RUN" for args in pip_installs(value)]
    assert installs, f"{dockerfile} installs nothing with pip"
    for args in installs:
        assert set(constraint_files(args)) & copied, f"{dockerfile}: pip install {' '.join(args)}"


def test_the_hub_image_is_the_pinned_jupyterhub_and_so_is_the_notebooks() -> None:
    pinned = pins()["jupyterhub"]
    (base,) = [v for i, v in instructions("Dockerfile.hub") if i == "ARG" and v.startswith("BASE_IMAGE=")]
    assert base == f"BASE_IMAGE=quay.io/jupyterhub/jupyterhub:{pinned}"
    notebook = [
        args for i, v in instructions("Dockerfile.notebook") if i == "RUN" for args in pip_installs(v)
    ]
    assert any("jupyterhub" in args and constraint_files(args) for args in notebook), notebook


def test_the_deployed_proxy_is_the_proxy_the_tests_ran() -> None:
    wanted = json.loads((REPO / "package.json").read_text())["dependencies"]["configurable-http-proxy"]
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/configurable-http-proxy"]["version"] == wanted
    installed = REPO / "node_modules" / "configurable-http-proxy" / "package.json"
    assert json.loads(installed.read_text())["version"] == wanted
    proxy = yaml.safe_load((REPO / "deploy" / "proxy-deployment.yaml").read_text())
    (container,) = proxy["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"quay\.io/jupyterhub/configurable-http-proxy:(.+)", container["image"])[1] == wanted
