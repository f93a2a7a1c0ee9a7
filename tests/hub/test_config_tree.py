"""The operator's YAML settings tree (BERDL_HUB_CONFIG_TREE) in a real JupyterHub: its values are in
effect, with the documented precedence (the tree, then the environment the hub config reads, then the
Python file of BERDL_HUB_EXTRA_CONFIG, the later winning), read back through the hub's REST API, its
pages and a spawned server."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from berdl_hub import config_tree
from berdl_hub.spawner import BERDLSpawner
from traitlets.config import Config

from localhub.tools import REPO
from tests.hub.hubtest_support import assert_no_secret_in
from tests.hub.hubtest_userserver import SPAWNER_CONFIG
from tests.hub.test_hub import (
    ADMIN_TOKEN,
    EXTRA_CONFIG,
    SECRETS,
    HubStack,
    hub_env,
    hub_stack,  # noqa: F401  (the fixture: a real hub beside a real proxy)
    run_hub_expecting_refusal,
)
from tests.hub.test_proxy_restart import start_server

pytestmark = pytest.mark.slow

TREE = {
    "JupyterHub": {
        # Also set by the environment (JUPYTERHUB_AUTHENTICATOR_CLASS): the environment wins, and the
        # tree cannot bring in an authenticator that lets anyone in.
        "authenticator_class": "dummy",
        # Also set by the Python file: the Python file wins.
        "template_vars": {"announcement": "announced by the tree"},
        # A list the hub config adds its own services to.
        "services": [{"name": "tree-service"}],
    },
    # Set by the tree only.
    "Authenticator": {"admin_users": ["carol"]},
    "SimpleLocalProcessSpawner": {"environment": {"BERDL_GREETING": "greeted by the tree"}},
}
YAML_SAYS = "expected ',' or ']', but got '<stream end>'"
PYTHON_FILE = 'c.JupyterHub.template_vars = {"announcement": "announced by the Python file"}\n'
READ_HUB = (
    'c.JupyterHub.load_roles.append({"name": "berdl-test-read-hub", '
    '"scopes": ["read:hub", "list:services", "read:services"], "services": [name]})\n'
)


def test_the_tree_is_in_effect_below_the_environment_and_the_python_file(
    hub_stack: HubStack,  # noqa: F811
) -> None:
    tmp = hub_stack.tmp
    (tmp / "tree.yaml").write_text(yaml.safe_dump(TREE))
    extra = EXTRA_CONFIG + SPAWNER_CONFIG.format(homes=str(tmp)) + READ_HUB + PYTHON_FILE
    (tmp / "extra_config.py").write_text(extra)
    (tmp / "data").mkdir()
    hub_stack.env.update(
        BERDL_HUB_CONFIG_TREE=str(tmp / "tree.yaml"),
        JUPYTERHUB_DB_URL=f"sqlite:///{tmp}/data/jupyterhub.sqlite",
    )
    hub_stack.start_hub()
    api = f"http://127.0.0.1:{hub_stack.hub_port}/hub/api"
    admin = {"Authorization": f"token {ADMIN_TOKEN}"}

    info = httpx.get(f"{api}/info", headers=admin).json()
    assert info["authenticator"]["class"] == "berdl_hub.auth.KBaseAuthenticator"
    login_page = httpx.get(f"{hub_stack.public_url}/hub/login").text
    assert "announced by the Python file" in login_page
    assert "announced by the tree" not in login_page
    assert httpx.get(f"{api}/users/carol", headers=admin).json()["admin"] is True
    services = {s["name"] for s in httpx.get(f"{api}/services", headers=admin).json().values()}
    assert {"tree-service", "jupyterhub-idle-culler", "berdl-proxy-watch", "berdl-test-admin"} <= services
    assert start_server(hub_stack, "alice") == "server of alice\ngreeted by the tree\n"

    hub_stack.stop_hub()
    assert_no_secret_in(hub_stack.logs(), SECRETS)


def test_a_broken_tree_stops_the_hub_with_one_line(tmp_path: Path) -> None:
    env = hub_env(tmp_path, 1, 1)
    (tmp_path / "tree.yaml").write_text("BERDLSpawner:\n  start_timeout: [300\n")
    env["BERDL_HUB_CONFIG_TREE"] = str(tmp_path / "tree.yaml")
    env["JUPYTERHUB_DB_URL"] = f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    code, output = run_hub_expecting_refusal(env, tmp_path)
    assert code == 2
    lines = [line for line in output.splitlines() if "BERDL_HUB_CONFIG_TREE" in line]
    assert lines == [f"  - BERDL_HUB_CONFIG_TREE: {tmp_path}/tree.yaml: not valid YAML (line 3): {YAML_SAYS}"]
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("tree", "problem"),
    [
        ("- BERDLSpawner\n", "must be a mapping of class names to their settings"),
        ("berdlspawner:\n  start_timeout: 300\n", "'berdlspawner' is not a class name"),
        ("BERDLSpawner: 300\n", "BERDLSpawner must map trait names to values, got int"),
    ],
)
def test_each_shape_error_of_the_tree_is_named(tmp_path: Path, tree: str, problem: str) -> None:
    (tmp_path / "tree.yaml").write_text(tree)
    with pytest.raises(config_tree.TreeError, match=re.escape(problem)):
        config_tree.read(str(tmp_path / "tree.yaml"))


def test_an_empty_tree_sets_nothing_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "tree.yaml").write_text("# nothing yet\n")
    assert config_tree.read(str(tmp_path / "tree.yaml")) == Config()
    with pytest.raises(config_tree.TreeError, match="cannot be read"):
        config_tree.read(str(tmp_path / "absent.yaml"))


def readme_example(tmp_path: Path) -> Path:
    """The worked example of deploy/README.md (the yaml block after its marker), as a file."""
    text = (REPO / "deploy" / "README.md").read_text()
    after = text.split("<!-- tests/hub/test_config_tree.py loads this block", 1)[1]
    block = after.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "hub-config.yaml"
    path.write_text(textwrap.dedent(block))
    return path


@pytest.mark.asyncio
@pytest.mark.usefixtures("kube_reset")
async def test_the_worked_example_of_the_deploy_readme_is_in_effect(
    tmp_path: Path, make_spawner: Callable[..., BERDLSpawner]
) -> None:
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator

    tree = config_tree.read(str(readme_example(tmp_path)))
    spawner = make_spawner(config=tree)
    assert spawner.start_timeout == 600
    assert spawner.node_selector == {"berdl.kbase.us/pool": "notebooks"}
    assert spawner.mem_limit == 8 * 1024**3
    assert spawner.profile_list[0]["kubespawner_override"]["mem_limit"] == "32G"
    assert spawner.image_pull_secrets == ["registry-credentials"]
    pod = (await spawner.get_pod_manifest()).to_dict()
    (home,) = [v for v in pod["spec"]["volumes"] if v["name"] == "berdl-home"]
    assert home["host_path"]["path"] == "/data/berdl/homes/alice"
    assert Authenticator(config=tree).admin_users == {"alice"}
    hub = JupyterHub(config=tree)
    assert hub.allow_named_servers is True
    assert hub.named_server_limit_per_user == 3
