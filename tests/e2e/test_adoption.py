"""A user moving over from BERDL's production hub: alice's home already holds what that hub left
(tests/production_home.py: its dotfiles and favorites, IPython start-up scripts that import a module this
image lacks, a notebook, and a package she installed with `pip install --user` on the image's Python),
every file hers (uid 1000, gid 100). Her first start on this stack shows her notebook in JupyterLab, her
package imports in a notebook, her files stay as they were, and a terminal says in one line what changed.

One stack for the module (its own work folder, .work/e2e-adoption), one user; the steps run in order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from localhub.browser import UserBrowser
from localhub.podman import NOTEBOOK_IMAGE, Podman
from localhub.stack import Stack, running_stack
from localhub.users import make_users
from localhub.wheels import module_wheel
from tests.conftest import require_tool
from tests.e2e.conftest import E2E_WORK
from tests.hub.hubtest_support import assert_no_secret_in
from tests.production_home import FAVORITES, NOTEBOOK, favorites, write_production_home
from tests.snapshots import Entry, lost, snapshot

pytestmark = pytest.mark.slow

WORK = E2E_WORK.with_name("e2e-adoption")
#: What alice installed with `pip install --user` under the production hub.
USER_PACKAGE = "berdl_probe_production"
UID, GID = 1000, 100
NOTEBOOK_PATH = "projects/from-production.ipynb"


def pip_install_user(podman: Podman, home: Path, wheels: Path) -> None:
    """`pip install --user` as alice ran it there (PIP_USER=1), as uid 1000 in the image's Python."""
    wheel = module_wheel(wheels, USER_PACKAGE)
    podman(
        "run", "--rm", "--user", f"{UID}:{GID}", "--env", "HOME=/home/alice", "--env", "PIP_USER=1",
        "--volume", f"{home}:/home/alice", "--volume", f"{wheels}:/wheels:ro",
        NOTEBOOK_IMAGE,
        "python", "-m", "pip", "install", "--no-index", "--no-cache-dir", f"/wheels/{wheel.name}",
        timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(podman: Podman) -> Iterator[Stack]:
    for tool in ("node", "runuser"):
        require_tool(tool)
    with running_stack(WORK, make_users("alice")) as running:
        home = running.home("alice")
        write_production_home(home, "alice")
        for folder, dirs, files in os.walk(home):  # the production hook's `chown -R USER:users`
            for name in [".", *dirs, *files]:
                os.lchown(Path(folder, name), UID, GID)
        pip_install_user(podman, home, running.work / "production-wheels")  # readable by uid 1000
        yield running


@pytest.fixture(scope="module", autouse=True)
def no_secret_in_any_log(stack: Stack) -> Iterator[None]:
    yield
    assert_no_secret_in(stack.logs(), stack.secrets)


@pytest.fixture(scope="module")
def before(stack: Stack) -> dict[str, Entry]:
    """Her home as the production hub left it, before her first start here."""
    return snapshot(stack.home("alice"))


@pytest.fixture(scope="module")
def alice(stack: Stack, browser: Any, before: dict[str, Entry]) -> UserBrowser:
    return UserBrowser.open(browser, "alice", stack.public_url, WORK / "shots")


def test_1_her_first_start_shows_her_notebook_and_changes_none_of_her_files(
    stack: Stack, alice: UserBrowser, before: dict[str, Entry]
) -> None:
    alice.log_in_on_kbase()
    alice.start_server()
    assert alice.folder() == "home/alice"
    alice.page.goto(f"{stack.public_url}/user/alice/lab/tree/home/alice/{NOTEBOOK_PATH}")
    cell = alice.notebook().locator(".jp-Cell .cm-content").first
    # The cell's editor is in the page before the notebook's content is drawn into it (a loaded machine
    # showed it empty, the notebook still loading): wait for the text, then compare it.
    source = "".join(NOTEBOOK["cells"][0]["source"])
    expect(cell).to_have_text(source, timeout=60_000)
    alice.shot("production-notebook")
    assert cell.inner_text() == source

    home = stack.home("alice")
    assert lost(before, snapshot(home), merged={FAVORITES}) == []
    production = favorites("alice")["favorites"]
    assert json.loads((home / FAVORITES).read_text())["favorites"][: len(production)] == production
    report = json.loads(stack.standins.node.init_log("jupyter-alice", "berdl-init"))
    (line,) = [w.removeprefix("adopt: ") for w in report["warnings"] if w.startswith("adopt: ")]
    assert line.startswith(
        "your home was set up for this notebook and kept as it was: your ~/.bash_profile stays"
    )
    assert "`pip install --user` packages (Python 3.11, ~/.local/lib/python3.11/site-packages) import" in line


def test_2_her_user_package_imports_in_a_notebook(podman: Podman, alice: UserBrowser) -> None:
    """The kernel runs her venv, which sees the image's packages and so her user site. The production
    image's start-up scripts fail here (no berdl_notebook_utils): IPython logs it in the server's log and
    the kernel starts; the notebook shows nothing of it."""
    printed = alice.run_in_new_notebook(
        f"import json, {USER_PACKAGE} as p; print(json.dumps([p.MARKER, p.__file__]))"
    )
    alice.shot("user-package")
    assert json.loads(printed.strip().splitlines()[-1]) == [
        USER_PACKAGE,
        f"/home/alice/.local/lib/python3.11/site-packages/{USER_PACKAGE}/__init__.py",
    ]
    assert "Traceback" not in printed
    assert "berdl_notebook_utils" not in printed
    server_log = podman("logs", "jupyter-alice-notebook")
    assert "Unknown error in handling startup files" in server_log.stdout + server_log.stderr


def test_3_a_terminal_says_in_one_line_what_changed(alice: UserBrowser) -> None:
    text = alice.terminal_text("echo shown")
    alice.shot("terminal-notice")
    assert "berdl-init: your home was set up for this notebook and kept as it was" in text, text
    assert "production notice" in text  # her own ~/.bash_profile still runs
