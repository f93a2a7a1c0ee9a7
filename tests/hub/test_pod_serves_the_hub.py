"""Two things the end-to-end journey (tests/e2e) found missing from the spawner's pod, checked offline:

- the notebook container starts `jupyterhub-singleuser`, whatever CMD the image has (the local stand-in
  of docker-stacks runs `jupyter lab`, which never answers the hub);
- berdl-init sees the shared folders (read-only), so a favorite pointing into one is added, not
  skipped as a folder that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from berdl_hub import manifest
from berdl_hub.spawner import BERDLSpawner

from tests.hub.test_manifest import by_name, pod_dict

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("kube_reset")]

SHARED = {"name": "shared", "mount_path": "/shared", "host_path": "/mnt/berdl/shared", "read_only": False}


async def test_the_notebook_starts_the_single_user_server(make_spawner: Callable[..., BERDLSpawner]) -> None:
    pod = await pod_dict(make_spawner())
    notebook = by_name(pod["spec"]["containers"], "notebook")[0]
    assert notebook["args"][0] == "jupyterhub-singleuser"


async def test_an_operator_cmd_still_wins(make_spawner: Callable[..., BERDLSpawner]) -> None:
    pod = await pod_dict(make_spawner(cmd=["start-notebook.py"]))
    assert by_name(pod["spec"]["containers"], "notebook")[0]["args"][0] == "start-notebook.py"


async def test_berdl_init_sees_the_shared_folders_read_only(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    pod = await pod_dict(make_spawner(shared_mounts=[SHARED]))
    init = by_name(pod["spec"]["initContainers"], manifest.INIT_CONTAINER_NAME)[0]
    notebook = by_name(pod["spec"]["containers"], "notebook")[0]
    assert by_name(notebook["volumeMounts"], "shared") == [
        {"name": "shared", "mountPath": "/shared", "readOnly": False}
    ]
    assert by_name(init["volumeMounts"], "shared") == [
        {"name": "shared", "mountPath": "/shared", "readOnly": True}
    ]
