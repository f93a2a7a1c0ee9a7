"""The local stack's operator settings (localhub.stack.EXTRA_CONFIG), as the hub's spawner expands them."""

from __future__ import annotations

import json
from typing import Any

from traitlets.config import Config

from localhub.stack import EXTRA_CONFIG, HOMES
from tests.images.manifests import container_named, spawner_pod
from tests.pods import env_of


def stack_traits() -> dict[str, Any]:
    config = Config()
    exec(EXTRA_CONFIG, {"c": config})
    traits = dict(config.BERDLSpawner)
    assert traits.pop("namespace") == "berdl"  # spawner_pod's own
    return traits


def test_jupyterlab_opens_in_the_mounted_home_named_as_the_user_spells_it() -> None:
    """KBase user names may hold "_", which no Kubernetes name may: the home folder, its mount and the URL
    JupyterLab opens are still the user's name (JupyterHub's `{username}` in default_url, KubeSpawner's
    `{unescaped_username}` in the home's paths), and the favorites name that same folder."""
    for name in ("alice", "jane_doe"):
        pod = spawner_pod(name, **stack_traits())
        notebook = container_named(pod, "notebook")
        (home,) = [m["mountPath"] for m in notebook["volumeMounts"] if m["name"] == "berdl-home"]
        (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "berdl-home"]
        env = env_of(notebook)
        assert home == env["HOME"] == f"/home/{name}"
        assert volume["hostPath"]["path"] == f"{HOMES}/{name}"
        assert env["JUPYTERHUB_ROOT_DIR"] == "/"
        assert env["JUPYTERHUB_DEFAULT_URL"] == f"/lab/tree/home/{name}"
        favorites = json.loads(env_of(container_named(pod, "berdl-init", init=True))["BERDL_FAVORITES"])
        assert favorites[0] == {"path": f"/home/{name}", "name": "Home"}
