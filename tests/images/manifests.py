"""The pod manifest BERDLSpawner builds for a user, offline, made runnable by `podman kube play`.

The spawner is built as tests/hub/test_manifest.py builds it (`_mock=True`, a kube config that points
nowhere); its manifest is changed only where a local podman must differ from a Kubernetes cluster.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from localhub.podman import INIT_IMAGE, NOTEBOOK_IMAGE
from localhub.standins.hub import FakeUser, kbase_token, reset_kubespawner
from localhub.standins.kube import throwaway_kube_config

#: podman keeps an initContainer of this type after it ran (the default, "once", removes it and its
#: logs): the test reads berdl-init's JSON report from its logs.
KEEP_INIT_CONTAINERS = {"io.podman.annotations.init.container.type": "always"}


async def _pod_dict(user: str, traits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    from berdl_hub.spawner import BERDLSpawner
    from kubernetes_asyncio.client import ApiClient

    try:
        fake_user = FakeUser(user, auth_state={"kbase_token": kbase_token(user)})
        spawner = BERDLSpawner(
            _mock=True,
            user=fake_user,
            namespace="berdl",
            api_token=f"hub-api-token-for-{user}-0123456789",
            **traits,
        )
        await spawner.run_auth_state_hook(await fake_user.get_auth_state())  # as the hub does
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as client:
            return client.sanitize_for_serialization(pod), spawner.credential_values()
    finally:
        await reset_kubespawner()


def spawner_pod_and_credentials(user: str, **traits: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The manifest BERDLSpawner.get_pod_manifest() returns for `user`, as Kubernetes JSON, and what
    the server's credentials Secret holds (`credential_values()`)."""
    traits = {
        "init_image": "ghcr.io/kbase/berdl-init:1.0",
        "image": "ghcr.io/kbase/berdl-notebook:1.0",
    } | traits
    with throwaway_kube_config():
        return asyncio.run(_pod_dict(user, traits))


def spawner_pod(user: str, **traits: Any) -> dict[str, Any]:
    """The manifest BERDLSpawner.get_pod_manifest() returns for `user`, as Kubernetes JSON."""
    return spawner_pod_and_credentials(user, **traits)[0]


def for_podman(pod: dict[str, Any], *, home: Path) -> dict[str, Any]:
    """The spawner's pod, changed only where a local podman run must differ from a cluster:

    - the images are the locally built ones;
    - the home volume (a hostPath) is a folder of the test;
    - the notebook container keeps the image's entrypoint (start.sh, with its hooks) but runs
      `sleep infinity` instead of the image's command, whose jupyterhub-singleuser would need a hub: the
      test runs its checks in the container with `podman exec`;
    - `status.podIP` (SPARK_DRIVER_HOST), a field podman 4.3 cannot fill in, becomes a literal;
    - the container ports go: podman 4.3 publishes each containerPort on the host (a cluster does not),
      so two pods, or anything listening on the host, would clash;
    - podman keeps the initContainer after it ran, for its logs (KEEP_INIT_CONTAINERS).
    """
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    pod["metadata"].setdefault("annotations", {}).update(KEEP_INIT_CONTAINERS)
    for init in spec["initContainers"]:
        init["image"] = INIT_IMAGE
    for container in spec["containers"]:
        container["image"] = NOTEBOOK_IMAGE
        container["args"] = ["sleep", "infinity"]
        container.pop("ports", None)
        for variable in container.get("env", []):
            if variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
                del variable["valueFrom"]
                variable["value"] = "127.0.0.1"
    homes = [v for v in spec["volumes"] if v["name"] == "berdl-home"]
    assert len(homes) == 1, "the spawner's pod has one home volume"
    homes[0]["hostPath"]["path"] = str(home)
    return pod


def container_named(pod: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    containers = pod["spec"]["initContainers" if init else "containers"]
    return next(c for c in containers if c["name"] == name)


def podman_name(pod: dict[str, Any], container: str) -> str:
    """`podman kube play` names each container POD-CONTAINER."""
    return f"{pod['metadata']['name']}-{container}"
