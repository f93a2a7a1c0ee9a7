"""Pod manifests built offline (`_mock=True`), checked by content and by `kubernetes-validate --strict`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from berdl_hub import manifest
from berdl_hub.spawner import BERDLSpawner
from kubernetes_asyncio.client import ApiClient

from tests.conftest import require_tool
from tests.pods import env_of

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("kube_reset")]

HUB_SECRETS = {
    "JUPYTERHUB_COOKIE_SECRET": "ab" * 32,
    "JUPYTERHUB_CRYPT_KEY": "cd" * 32,
    "CONFIGPROXY_AUTH_TOKEN": "proxy-token-0123456789abcdef0123456789",
    "PGPASSWORD": "pg-password-0123456789",
}


async def pod_dict(spawner: BERDLSpawner) -> dict[str, Any]:
    pod = await spawner.get_pod_manifest()
    async with ApiClient() as client:
        return client.sanitize_for_serialization(pod)


def by_name(items: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [item for item in items if item["name"] == name]


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    exe = require_tool("kubernetes-validate")
    return subprocess.run(
        [exe, "--strict", "--quiet", *map(str, paths)], capture_output=True, text=True, check=False
    )


USERS = [
    pytest.param({"name": "alice"}, id="user"),
    pytest.param({"name": "bob", "admin": True}, id="admin"),
    pytest.param({"name": "Émile.O'Brien@lbl.gov"}, id="escaped-name"),
]


@pytest.mark.parametrize("user", USERS)
async def test_pod_manifest_passes_strict_schema_validation(
    user: dict[str, Any], make_spawner: Callable[..., BERDLSpawner], tmp_path: Path
) -> None:
    spawner = make_spawner(
        **user,
        shared_mounts=[{"name": "global-share", "mount_path": "/global_share", "host_path": "/mnt/share"}],
        admin_mounts=[{"name": "all-homes", "mount_path": "/homes", "host_path": "/mnt/berdl/homes"}],
        admin_resources={"mem_limit": "64G", "cpu_limit": 16.0},
        mem_limit="8G",
    )
    pod = await pod_dict(spawner)
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(pod))
    result = kubernetes_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr

    notebook = by_name(pod["spec"]["containers"], "notebook")[0]
    mounts = {m["name"]: m for m in notebook["volumeMounts"]}
    assert "global-share" in mounts
    assert mounts["global-share"]["readOnly"] is True
    if user.get("admin"):
        assert "all-homes" in mounts
        assert notebook["resources"]["limits"]["memory"] == 64 * 2**30
    else:
        assert "all-homes" not in mounts
        assert notebook["resources"]["limits"]["memory"] == 8 * 2**30


async def test_strict_validation_rejects_a_stray_field(
    make_spawner: Callable[..., BERDLSpawner], tmp_path: Path
) -> None:
    """The schema check above can fail: an unknown field in the initContainer is refused."""
    pod = await pod_dict(make_spawner())
    pod["spec"]["initContainers"][0]["securityContext"]["dropAll"] = True
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(pod))
    result = kubernetes_validate(path)
    assert result.returncode != 0


@pytest.mark.parametrize("user", USERS)
async def test_init_container_shares_the_notebook_home_and_carries_the_user_settings(
    user: dict[str, Any], make_spawner: Callable[..., BERDLSpawner]
) -> None:
    spawner = make_spawner(**user)
    pod = await pod_dict(spawner)

    inits = by_name(pod["spec"]["initContainers"], manifest.INIT_CONTAINER_NAME)
    assert len(inits) == 1
    init = inits[0]
    notebook = by_name(pod["spec"]["containers"], "notebook")[0]
    home_in_notebook = by_name(notebook["volumeMounts"], manifest.HOME_VOLUME)
    home_in_init = by_name(init["volumeMounts"], manifest.HOME_VOLUME)
    assert home_in_init == home_in_notebook
    mount_path = home_in_notebook[0]["mountPath"]
    assert notebook["workingDir"] == mount_path

    env = env_of(init)
    assert env["BERDL_HOME"] == mount_path
    assert env["BERDL_USER"] == user["name"]
    assert (env["BERDL_UID"], env["BERDL_GID"]) == ("1000", "100")
    # The server's root is the home (no notebook_dir): favorites are relative to the home's path.
    assert env["BERDL_FAVORITES_ROOT"] == mount_path
    notebook_env = env_of(notebook)
    assert notebook_env["HOME"] == mount_path
    # The folders berdl-init's dirs step prepares, per user.
    assert notebook_env["JUPYTER_CONFIG_DIR"] == f"{mount_path}/.jupyter"
    assert notebook_env["JUPYTER_DATA_DIR"] == f"{mount_path}/.jupyter/data"
    assert notebook_env["JUPYTER_RUNTIME_DIR"] == f"{mount_path}/.jupyter/runtime"

    # One hostPath folder per user, under the base, named by the same safe slug as the mount.
    volume = by_name(pod["spec"]["volumes"], manifest.HOME_VOLUME)[0]
    assert volume["hostPath"]["path"] == "/mnt/berdl/homes/" + mount_path.rsplit("/", 1)[1]
    assert pod["spec"]["volumes"].count(volume) == 1


async def test_init_container_is_added_once_per_manifest_even_after_two_spawns(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    spawner = make_spawner(init_containers=[{"name": "operator-init", "image": "busybox:1"}])
    first = await pod_dict(spawner)
    second = await pod_dict(spawner)
    for pod in (first, second):
        names = [c["name"] for c in pod["spec"]["initContainers"]]
        assert names == [manifest.INIT_CONTAINER_NAME, "operator-init"]
        assert len(by_name(pod["spec"]["volumes"], manifest.HOME_VOLUME)) == 1
    assert spawner.init_containers == [{"name": "operator-init", "image": "busybox:1"}]


async def test_hostpath_home_runs_init_as_root_with_only_the_capabilities_to_fix_it(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    init = (await pod_dict(make_spawner()))["spec"]["initContainers"][0]
    context = init["securityContext"]
    assert context["runAsUser"] == 0
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "SETGID", "SETUID"]}
    assert by_name(init["volumeMounts"], manifest.INIT_TMP_VOLUME)[0]["mountPath"] == "/tmp"


async def test_pvc_home_runs_init_as_the_user(make_spawner: Callable[..., BERDLSpawner]) -> None:
    spawner = make_spawner(
        home_volume_type="pvc", home_claim_name="berdl-homes", home_sub_path="{username}", uid=1234, gid=567
    )
    pod = await pod_dict(spawner)
    init = pod["spec"]["initContainers"][0]
    context = init["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (1234, 567, True)
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert (env_of(init)["BERDL_UID"], env_of(init)["BERDL_GID"]) == ("1234", "567")
    volume = by_name(pod["spec"]["volumes"], manifest.HOME_VOLUME)[0]
    assert volume["persistentVolumeClaim"] == {"claimName": "berdl-homes"}
    assert by_name(init["volumeMounts"], manifest.HOME_VOLUME)[0]["subPath"] == "alice"


@pytest.mark.parametrize("call", ["plain", "coroutine"])
async def test_uid_and_gid_as_callables_of_the_spawner_reach_berdl_init_as_kubespawner_allows(
    make_spawner: Callable[..., BERDLSpawner], call: str
) -> None:
    async def later(value: int) -> int:
        return value

    def uid(spawner: BERDLSpawner) -> Any:
        value = 2000 + len(spawner.user.name)
        return later(value) if call == "coroutine" else value

    spawner = make_spawner(
        home_volume_type="pvc", home_claim_name="berdl-homes", uid=uid, gid=lambda _: "567"
    )
    init = (await pod_dict(spawner))["spec"]["initContainers"][0]
    assert (env_of(init)["BERDL_UID"], env_of(init)["BERDL_GID"]) == ("2005", "567")
    assert (init["securityContext"]["runAsUser"], init["securityContext"]["runAsGroup"]) == (2005, 567)


async def test_literal_braces_survive_template_expansion(make_spawner: Callable[..., BERDLSpawner]) -> None:
    spawner = make_spawner(
        init_favorites=[{"path": "/home/{username}/data", "name": "My {data}"}],
        init_template_vars={"prompt": "{user}@berdl $ ", "json": '{"a": 1}'},
        init_environment={"BERDL_VENV_PYTHON": "/opt/{conda}/bin/python"},
    )
    env = env_of((await pod_dict(spawner))["spec"]["initContainers"][0])
    assert json.loads(env["BERDL_FAVORITES"]) == [{"path": "/home/alice/data", "name": "My {data}"}]
    assert json.loads(env["BERDL_TEMPLATE_VARS"]) == {"prompt": "{user}@berdl $ ", "json": '{"a": 1}'}
    assert env["BERDL_VENV_PYTHON"] == "/opt/{conda}/bin/python"


@pytest.mark.parametrize(
    ("notebook_dir", "expected"),
    [("/", "/"), ("/home/{username}", "HOME"), ("/home/{username}/work", "~/work")],
)
@pytest.mark.parametrize("name", ["alice", "Émile.O'Brien@lbl.gov"])
async def test_favorites_root_agrees_with_the_notebook_root(
    name: str, notebook_dir: str, expected: str, make_spawner: Callable[..., BERDLSpawner]
) -> None:
    pod = await pod_dict(make_spawner(name, notebook_dir=notebook_dir))
    notebook = by_name(pod["spec"]["containers"], "notebook")[0]
    home = by_name(notebook["volumeMounts"], manifest.HOME_VOLUME)[0]["mountPath"]
    root_dir = env_of(notebook)["JUPYTERHUB_ROOT_DIR"]
    assert root_dir == notebook_dir.replace("/home/{username}", home)
    favorites_root = env_of(pod["spec"]["initContainers"][0])["BERDL_FAVORITES_ROOT"]
    assert favorites_root == expected.replace("HOME", home)


async def test_no_hub_secret_reaches_the_pod(
    make_spawner: Callable[..., BERDLSpawner], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in HUB_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MINIO_ENDPOINT_URL", "http://minio:9000")
    spawner = make_spawner(hub_env_to_forward=["MINIO_ENDPOINT_URL"])
    text = json.dumps(await pod_dict(spawner))
    for value in HUB_SECRETS.values():
        assert value not in text
    env = env_of(by_name((await pod_dict(spawner))["spec"]["containers"], "notebook")[0])
    assert env["MINIO_ENDPOINT_URL"] == "http://minio:9000"
    assert "PATH" not in env  # never the hub's whole environment
    init_env = env_of((await pod_dict(spawner))["spec"]["initContainers"][0])
    assert all(name.startswith("BERDL_") for name in init_env)


async def test_forwarding_a_hub_secret_is_refused(make_spawner: Callable[..., BERDLSpawner]) -> None:
    with pytest.raises(Exception, match="JUPYTERHUB_CRYPT_KEY"):
        make_spawner(hub_env_to_forward=["LANG", "JUPYTERHUB_CRYPT_KEY"])


async def test_a_bad_shared_mount_is_refused_with_its_name(make_spawner: Callable[..., BERDLSpawner]) -> None:
    with pytest.raises(Exception, match="scratch"):
        make_spawner(shared_mounts=[{"name": "scratch", "mount_path": "relative/path", "host_path": "/x"}])


async def test_favorites_root_rules() -> None:
    assert manifest.favorites_root("/", "/home/a") == "/"
    assert manifest.favorites_root("/home/a", "/home/a") == "/home/a"
    assert manifest.favorites_root("/home/a/", "/home/a") == "/home/a"
    assert manifest.favorites_root("/home/a/x/y", "/home/a") == "~/x/y"
    assert manifest.favorites_root("/home/ab", "/home/a") == "/home/ab"
    assert manifest.favorites_root("", "/home/a") == "/home/a"


async def test_the_spawner_is_importable_by_its_design_path_and_entry_point() -> None:
    import runpy
    from importlib.metadata import entry_points

    from berdl_hub.spawner import BERDLSpawner as Spawner

    shim = runpy.run_path(str(Path(__file__).resolve().parents[2] / "hub" / "berdl_spawner.py"))
    assert shim["BERDLSpawner"] is Spawner
    (berdl,) = [e for e in entry_points(group="jupyterhub.spawners") if e.name == "berdl"]
    assert berdl.load() is Spawner


async def test_init_failure_reads_only_berdl_init_and_only_errors() -> None:
    def pod(name: str, state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
        status = {"name": name, "state": state, "lastState": last or {}}
        return {"status": {"initContainerStatuses": [status]}}

    assert manifest.init_failure(None) is None
    assert manifest.init_failure({"status": {}}) is None
    assert manifest.init_failure(pod("berdl-init", {"terminated": {"exitCode": 0}})) is None
    assert manifest.init_failure(pod("other", {"terminated": {"exitCode": 3}})) is None
    retried = pod("berdl-init", {"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"exitCode": 3}})
    assert "status 3" in (manifest.init_failure(retried) or "")
    assert "status 1: it failed" in (
        manifest.init_failure(pod("berdl-init", {"terminated": {"exitCode": 1}})) or ""
    )


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        # The default budget: the restore gets what the venv build and the rest leave of it.
        ({}, {"BERDL_VENV_RESTORE_TIMEOUT": "120"}),
        ({"init_time_budget": 45.5}, {"BERDL_VENV_RESTORE_TIMEOUT": "15.5"}),
        # Nothing left for a restore: none at all, rather than one that overruns the budget.
        ({"init_time_budget": 20.0}, {"BERDL_VENV_RESTORE": "false"}),
        # No more than berdl-init accepts, which would refuse its settings at every start.
        ({"init_time_budget": 7200.0}, {"BERDL_VENV_RESTORE_TIMEOUT": "3600"}),
        # The operator's own bound wins, as init_environment's values do.
        ({"init_environment": {"BERDL_VENV_RESTORE_TIMEOUT": "600"}}, {"BERDL_VENV_RESTORE_TIMEOUT": "600"}),
    ],
)
async def test_berdl_init_is_held_to_its_time_budget(
    make_spawner: Callable[..., BERDLSpawner], traits: dict[str, Any], expected: dict[str, str]
) -> None:
    (init,) = by_name((await pod_dict(make_spawner(**traits)))["spec"]["initContainers"], "berdl-init")
    env = env_of(init)
    restore_settings = {
        k: v for k, v in env.items() if k in ("BERDL_VENV_RESTORE", "BERDL_VENV_RESTORE_TIMEOUT")
    }
    assert restore_settings == expected
