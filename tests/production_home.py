"""A home as BERDL's production hub leaves it, for the tests that take one over (tests/init/test_adopt.py,
tests/e2e/test_adoption.py).

What is in it follows BERDataLakehouse/spark_notebook's root start hook
(configs/jupyter_docker_stacks_hooks/11-setup_env.sh) and its /etc/skel, under a hub that set PIP_USER=1
(BERDataLakehouse/BERDL_JupyterHub, berdlhub/config/environment.py). The contents are this project's
stand-ins, written to the same shape, not copies:

- `~/.bash_profile`, which the hook writes again from /etc/skel at every start: it reads
  `~/.custom_profile`, sets a prompt and aliases, and prints a notice in interactive shells; it does not
  read `~/.bashrc`;
- `~/.custom_profile`, written once, the user's to change;
- `~/.jupyter/jupyter_ai_config.json`, written once;
- the favorites the hook writes once: global_share, the home (named after the user) and lakehouse_minio,
  each with root "/", and `showWidget`;
- IPython start-up scripts, installed again at every start: the first imports berdl_notebook_utils,
  the next uses what it imported;
- what the user installed with `pip install --user` (PIP_USER=1): `~/.local/lib/pythonX.Y/site-packages`;
- the user's own notebooks.

The hook ends with `chown -R USER:users` on the home: every file is uid 1000, gid 100 (made so by the
caller where it can).
"""

from __future__ import annotations

import json
from pathlib import Path

FAVORITES = ".jupyter/lab/user-settings/@jlab-enhanced/favorites/favorites.jupyterlab-settings"
STARTUP = ".ipython/profile_default/startup"

BASH_PROFILE = """\
# Written again at every start from the image's /etc/skel: keep your changes in ~/.custom_profile.
if [ -f ~/.custom_profile ]; then
    . ~/.custom_profile
fi
PS1='\\u@\\h \\w$ '
alias ls='ls --color=auto'
case "$-" in
    *i*) echo "production notice: this system is for authorized use only" >&2 ;;
esac
"""

CUSTOM_PROFILE = "# Your own shell settings; read by ~/.bash_profile.\nexport EDITOR=nano\n"

JUPYTER_AI_CONFIG = {"AiExtension": {"allowed_providers": ["openai-chat", "anthropic-chat", "ollama"]}}

STARTUP_SCRIPTS = {
    "00-notebookutils.py": "from berdl_notebook_utils.berdl_settings import get_settings  # noqa: F401\n",
    "01-minio-credentials.py": "credentials = get_settings()  # noqa: F821\n",
}

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "a1",
            "metadata": {},
            "outputs": [],
            "source": ["print('from production')"],
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def favorites(user: str) -> dict[str, object]:
    """The favorites the hook writes for `user` (its template, with the user's name filled in)."""

    def entry(path: str, name: str) -> dict[str, str]:
        return {
            "root": "/",
            "path": path,
            "contentType": "directory",
            "iconLabel": "ui-components:folder",
            "name": name,
        }

    return {
        "favorites": [
            entry("global_share", "Global Share"),
            entry("", user),
            entry("lakehouse_minio", "Lakehouse"),
        ],
        "showWidget": True,
    }


def write_production_home(home: Path, user: str) -> None:
    """Everything of a production home but the user site (which a pip of the right Python installs)."""
    files = {
        ".bash_profile": BASH_PROFILE,
        ".custom_profile": CUSTOM_PROFILE,
        ".jupyter/jupyter_ai_config.json": json.dumps(JUPYTER_AI_CONFIG, indent=2) + "\n",
        FAVORITES: json.dumps(favorites(user), indent=4),
        "projects/from-production.ipynb": json.dumps(NOTEBOOK, indent=1) + "\n",
        **{f"{STARTUP}/{name}": text for name, text in STARTUP_SCRIPTS.items()},
    }
    for rel, text in files.items():
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
