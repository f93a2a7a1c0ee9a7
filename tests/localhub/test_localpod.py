"""The node stand-in's changes to the spawner's own pod (localhub/localpod.py), offline: each listed
change is made, and nothing else of the pod is touched."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from berdl_hub.notebook_env import POD_FACTS

from localhub.localpod import KEEP_INIT_CONTAINERS, for_this_machine, secret_refs
from tests.images.manifests import spawner_pod
from tests.pods import env_of

IMAGES = {"ghcr.io/kbase/berdl-init:1.0": "localhost/berdl-init:test",
          "ghcr.io/kbase/berdl-notebook:1.0": "localhost/berdl-notebook:test"}  # fmt: skip
POD_IP = "127.42.0.7"


@pytest.fixture(scope="module")
def posted() -> dict[str, Any]:
    pod = spawner_pod(
        "alice", shared_mounts=[{"name": "shared", "mount_path": "/shared", "host_path": "/data"}]
    )
    pod["status"] = {"phase": "Pending"}
    return pod


def test_each_listed_change_is_made(posted: dict[str, Any]) -> None:
    local = for_this_machine(posted, pod_ip=POD_IP, host_root="/tmp/node", images=IMAGES)
    spec = local["spec"]
    containers = spec["initContainers"] + spec["containers"]
    assert {c["image"] for c in containers} == set(IMAGES.values())
    assert {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v} == {
        "/tmp/node/mnt/berdl/homes/alice",
        "/tmp/node/data",
    }
    assert spec["hostNetwork"] is True
    assert all("ports" not in c for c in containers)
    notebook = env_of(next(c for c in spec["containers"] if c["name"] == "notebook"))
    assert notebook["JUPYTERHUB_SERVICE_URL"] == f"http://{POD_IP}:8888/"  # offline: no server, base URL /
    assert notebook["SPARK_DRIVER_HOST"] == POD_IP
    # The pod's own facts, as a kubelet fills them in: its address and name, the notebook's requests and
    # limits (CPU in whole cores, rounded up; memory in bytes).
    assert notebook["BERDL_POD_IP"] == POD_IP
    assert notebook["BERDL_POD_NAME"] == "jupyter-alice"
    assert (notebook["BERDL_CPU_REQUEST"], notebook["BERDL_CPU_LIMIT"]) == ("1", "4")  # 0.5 and 4 cores
    assert (notebook["BERDL_MEMORY_REQUEST"], notebook["BERDL_MEMORY_LIMIT"]) == (
        str(2 * 2**30),
        str(16 * 2**30),
    )
    assert not [
        e
        for c in containers
        for e in c.get("env", [])
        if "valueFrom" in e and "secretKeyRef" not in e["valueFrom"]
    ]
    assert local["metadata"]["annotations"].items() >= KEEP_INIT_CONTAINERS.items()
    assert "status" not in local


def test_nothing_else_changes(posted: dict[str, Any]) -> None:
    before = copy.deepcopy(posted)
    local = for_this_machine(posted, pod_ip=POD_IP, host_root="/tmp/node", images=IMAGES)
    assert posted == before  # the API's pod is not modified in place
    for name in ("securityContext", "restartPolicy", "automountServiceAccountToken"):
        assert local["spec"].get(name) == posted["spec"].get(name)
    for mine, theirs in zip(local["spec"]["containers"], posted["spec"]["containers"], strict=True):
        for field in ("args", "command", "volumeMounts", "securityContext", "resources", "workingDir"):
            assert mine.get(field) == theirs.get(field), field
        changed = {"JUPYTERHUB_SERVICE_URL", "SPARK_DRIVER_HOST", *POD_FACTS}
        assert {k: v for k, v in env_of(mine).items() if k not in changed} == {
            k: v for k, v in env_of(theirs).items() if k not in changed
        }


def test_the_credentials_come_from_the_pods_secret(posted: dict[str, Any]) -> None:
    assert secret_refs(posted) == {"jupyter-alice-credentials"}


def test_an_image_without_a_local_build_is_refused(posted: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"no local image for 'ghcr\.io/kbase/berdl-init:1\.0'"):
        for_this_machine(posted, pod_ip=POD_IP, host_root="/tmp/node", images={})


def test_each_container_gets_the_nodes_file_at_its_termination_message_path(posted: dict[str, Any]) -> None:
    """Change 8: as the kubelet mounts a file of its own at every container's terminationMessagePath."""
    files = {
        "berdl-init": "/node/p/berdl-init.termination-log",
        "notebook": "/node/p/notebook.termination-log",
    }
    local = for_this_machine(
        posted, pod_ip=POD_IP, host_root="/tmp/node", images=IMAGES, termination_files=files
    )
    spec = local["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["initContainers"] + spec["containers"]:
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/termination-log"]
        assert volumes[mount["name"]]["hostPath"] == {"path": files[container["name"]], "type": "File"}
    # Not below host_root: the file is the node's own, not a folder of the cluster's nodes.
    assert sum(v["name"].startswith("node-termination-message") for v in spec["volumes"]) == 2
