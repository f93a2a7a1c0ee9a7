"""The local stack's operator settings (localhub.stack.EXTRA_CONFIG), as the hub's spawner expands them."""

from __future__ import annotations

from typing import Any

from traitlets.config import Config

from localhub.stack import EXTRA_CONFIG
from tests.images.manifests import container_named, spawner_pod
from tests.pods import env_of


def stack_traits() -> dict[str, Any]:
    config = Config()
    exec(EXTRA_CONFIG, {"c": config})
    traits = dict(config.BERDLSpawner)
    assert traits.pop("namespace") == "berdl"  # spawner_pod's own
    return traits


def test_jupyterlab_opens_in_the_mounted_home_also_for_a_name_the_slug_changes() -> None:
    """KBase user names may hold "_", which no Kubernetes name may: the home folder is then named by
    KubeSpawner's slug, and the URL JupyterLab opens must name that same folder."""
    for name in ("alice", "jane_doe"):
        notebook = container_named(spawner_pod(name, **stack_traits()), "notebook")
        (home,) = [m["mountPath"] for m in notebook["volumeMounts"] if m["name"] == "berdl-home"]
        env = env_of(notebook)
        assert env["JUPYTERHUB_ROOT_DIR"] == "/"
        assert env["JUPYTERHUB_DEFAULT_URL"] == f"/lab/tree{home}", name
    assert home != "/home/jane_doe"  # the slug did change this one
