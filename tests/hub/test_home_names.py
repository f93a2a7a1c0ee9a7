"""Homes are named by the user's name as KBase spells it, where BERDL's production hub keeps them: the
pod's hostPath, its mountPath and HOME; pod and Secret names stay KubeSpawner's DNS-safe ones; `{username}`
in JupyterHub's own settings means what it means upstream; a name that cannot be one path component is
refused at spawn, before anything is made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from berdl_hub import credentials, home_names, manifest
from berdl_hub.spawner import BERDLSpawner, SpawnRefused
from kubernetes_asyncio.client import ApiClient

from tests.hub.hubtest_stack import Stack
from tests.pods import env_of

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


async def pod_dict(spawner: BERDLSpawner) -> dict[str, Any]:
    pod = await spawner.get_pod_manifest()
    async with ApiClient() as client:
        return client.sanitize_for_serialization(pod)


def named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(item for item in items if item["name"] == name)


def home_of(pod: dict[str, Any]) -> dict[str, str]:
    """Where the pod keeps its home: the node's folder, the mount, HOME, and what berdl-init is told."""
    notebook = named(pod["spec"]["containers"], "notebook")
    init = named(pod["spec"]["initContainers"], manifest.INIT_CONTAINER_NAME)
    return {
        "hostPath": named(pod["spec"]["volumes"], manifest.HOME_VOLUME)["hostPath"]["path"],
        "mountPath": named(notebook["volumeMounts"], manifest.HOME_VOLUME)["mountPath"],
        "init mountPath": named(init["volumeMounts"], manifest.HOME_VOLUME)["mountPath"],
        "HOME": env_of(notebook)["HOME"],
        "workingDir": notebook["workingDir"],
        "BERDL_HOME": env_of(init)["BERDL_HOME"],
        "BERDL_USER": env_of(init)["BERDL_USER"],
    }


@pytest.mark.asyncio
@pytest.mark.usefixtures("kube_reset")
@pytest.mark.parametrize("name", ["alice", "john_doe", "christopher_henderson_lab"])
async def test_the_home_is_the_folder_of_the_users_name_where_production_keeps_it(
    name: str, make_spawner: Callable[..., BERDLSpawner]
) -> None:
    spawner = make_spawner(name)
    pod = await pod_dict(spawner)
    assert home_of(pod) == {
        "hostPath": f"/mnt/berdl/homes/{name}",
        "mountPath": f"/home/{name}",
        "init mountPath": f"/home/{name}",
        "HOME": f"/home/{name}",
        "workingDir": f"/home/{name}",
        "BERDL_HOME": f"/home/{name}",
        "BERDL_USER": name,
    }
    # Kubernetes names stay KubeSpawner's DNS-safe slugs.
    assert pod["metadata"]["name"] == spawner.pod_name
    assert pod["metadata"]["name"].replace("jupyter-", "", 1).isascii()
    assert "_" not in pod["metadata"]["name"]
    assert "_" not in credentials.secret_name(spawner.pod_name)


@pytest.mark.asyncio
@pytest.mark.usefixtures("kube_reset")
async def test_two_names_alike_in_their_first_21_characters_get_homes_of_their_own(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    names = ["christopher_henderson_lab", "christopher_henderson_bio"]
    assert names[0][:21] == names[1][:21]
    homes = [home_of(await pod_dict(make_spawner(name))) for name in names]
    assert [home["hostPath"] for home in homes] == [f"/mnt/berdl/homes/{name}" for name in names]
    assert [home["HOME"] for home in homes] == [f"/home/{name}" for name in names]


@pytest.mark.asyncio
@pytest.mark.usefixtures("kube_reset")
async def test_username_in_jupyterhubs_own_settings_is_the_users_name_as_upstream(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    """notebook_dir and default_url are JupyterHub's: its `{username}` is the user's name (as in
    JupyterHub's Spawner.format_string), so "/home/{username}" is the mounted home."""
    spawner = make_spawner(
        "john_doe", notebook_dir="/home/{username}", default_url="/lab/tree/home/{username}/work"
    )
    pod = await pod_dict(spawner)
    env = env_of(named(pod["spec"]["containers"], "notebook"))
    assert env["JUPYTERHUB_ROOT_DIR"] == home_of(pod)["mountPath"] == "/home/john_doe"
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/lab/tree/home/john_doe/work"
    init = env_of(named(pod["spec"]["initContainers"], manifest.INIT_CONTAINER_NAME))
    assert init["BERDL_FAVORITES_ROOT"] == "/home/john_doe"
    # KubeSpawner's own templates keep KubeSpawner's meaning: there `{username}` is its slug.
    slugged = make_spawner("john_doe", home_host_path="/data/{username}")
    slug = slugged.pod_name.removeprefix("jupyter-")
    assert slug.startswith("john-doe---")
    assert home_of(await pod_dict(slugged))["hostPath"] == f"/data/{slug}"


REFUSED = {
    "a/b": "it holds '/'",
    "..": "it is '..'",
    ".": "it is '.'",
    ".hidden": "it starts with '.'",
    "nul\0byte": "it holds a NUL character",
    "é" * 128: "it is 256 bytes long",
}


@pytest.mark.usefixtures("kube_reset")
@pytest.mark.parametrize(
    "name", list(REFUSED), ids=["slash", "dotdot", "dot", "leading-dot", "nul", "256-bytes"]
)
@pytest.mark.asyncio
async def test_a_name_that_is_no_path_component_gets_no_pod(
    name: str, make_spawner: Callable[..., BERDLSpawner]
) -> None:
    with pytest.raises(SpawnRefused) as refused:
        await pod_dict(make_spawner(name))
    message = str(refused.value)
    assert "\n" not in message
    assert REFUSED[name] in message
    assert home_names.RULE in message


def test_the_longest_name_and_kbase_names_are_homes() -> None:
    for name in ("a" * 255, "é" * 127 + "a", "john_doe", "x1", "with space", "dots.inside"):
        assert home_names.problem(name) is None, name


@pytest.mark.asyncio
async def test_a_spawn_for_such_a_name_is_refused_before_keys_cluster_or_pod(stack: Stack) -> None:
    spawner = stack.spawner("../bob")
    with pytest.raises(SpawnRefused, match=r"holds '/'.*one path component"):
        await spawner.start()
    assert stack.governance.calls == 0
    assert stack.spark.calls == []
    assert stack.pods() == []
    assert stack.secrets() == []


@pytest.mark.parametrize("name", ["..", "a/b", ".hidden", "x" * 256])
def test_refuse_raises_the_one_line_refusal_for_a_name_no_home_can_have(name: str) -> None:
    with pytest.raises(SpawnRefused) as refused:
        home_names.refuse(name)
    assert refused.value.jupyterhub_message == home_names.refusal(name)


def test_refuse_lets_a_kbase_name_through() -> None:
    home_names.refuse("john_doe")
