"""The shipped dotfile templates: they render with StrictUndefined, and bash runs them cleanly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from berdl_init.settings import PACKAGED_TEMPLATES, Settings
from berdl_init.steps.dotfiles import discover, render, template_context
from tests.conftest import require_tool


def settings_for(home: Path, user: str = "alice") -> Settings:
    return Settings(home=home, user=user, steps=["dotfiles"])


def render_into(home: Path, user: str = "alice") -> None:
    settings = settings_for(home, user)
    for template in discover(PACKAGED_TEMPLATES):
        (home / template.target).write_bytes(render(template, template_context(settings)))


def interactive_bash(home: Path, command: str) -> subprocess.CompletedProcess[str]:
    """An interactive login shell, as a JupyterLab terminal starts one, in a clean environment."""
    bash = require_tool("bash")
    return subprocess.run(
        [bash, "--login", "-i", "-c", command],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "TERM": "dumb"},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_every_shipped_template_renders_with_strict_undefined(clean_env, tmp_path: Path) -> None:
    templates = discover(PACKAGED_TEMPLATES)

    assert {template.name for template in templates} == {"bashrc.j2", "bash_profile.j2"}
    for template in templates:
        text = render(template, template_context(settings_for(tmp_path))).decode()
        assert "{{" not in text
        assert "{%" not in text
        assert text.endswith("\n")


def test_rendered_dotfiles_are_valid_bash(clean_env, tmp_path: Path) -> None:
    render_into(tmp_path)
    for name in (".bashrc", ".bash_profile"):
        result = subprocess.run(
            [require_tool("bash"), "-n", str(tmp_path / name)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def test_a_terminal_without_the_venv_prints_no_error(clean_env, tmp_path: Path) -> None:
    render_into(tmp_path)

    result = interactive_bash(tmp_path, 'echo "venv=${VIRTUAL_ENV:-none}"; type ls')

    assert result.returncode == 0
    assert "venv=none" in result.stdout
    assert "ls is aliased to `ls --color=auto'" in result.stdout
    assert [
        line for line in result.stderr.splitlines() if "job control" not in line and "ioctl" not in line
    ] == []


def test_a_terminal_activates_the_venv_when_it_exists(clean_env, tmp_path: Path) -> None:
    render_into(tmp_path)
    venv = tmp_path / ".virtualenvs/envs/alice_default_env"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/activate").write_text(f'export VIRTUAL_ENV="{venv}"\nexport PATH="{venv}/bin:$PATH"\n')

    result = interactive_bash(tmp_path, 'echo "venv=$VIRTUAL_ENV"; echo "path=$PATH"')

    assert f"venv={venv}" in result.stdout
    assert f"path={venv}/bin:" in result.stdout


def test_the_prompt_shows_the_user_and_never_runs_the_name(clean_env, tmp_path: Path) -> None:
    render_into(tmp_path, user="eve$(touch pwned)`touch pwned2`")

    result = interactive_bash(tmp_path, 'echo "prompt=${PS1@P}"')

    shown = result.stdout.replace("\x01", "").replace("\x02", "")
    assert "\x1b[1;32meve$(touch pwned)`touch pwned2`\x1b[0m:" in shown
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()


@pytest.mark.parametrize("name", [".bashrc", ".bash_profile"])
def test_each_dotfile_says_it_is_managed(clean_env, tmp_path: Path, name: str) -> None:
    render_into(tmp_path)

    assert "written by berdl-init" in (tmp_path / name).read_text().splitlines()[0]
