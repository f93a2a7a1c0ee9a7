"""BERDLSpawner keeps KubeSpawner's promises, and keeps credentials out of the pod: offline pod
manifests (`_mock=True`) and the configuration check the hub runs when it loads its settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from berdl_hub import credentials, manifest, server_objects
from berdl_hub.server_objects import ServerPod
from berdl_hub.spawner import BERDLSpawner
from berdl_hub.spawner_settings import SpawnerConfigError
from kubernetes_asyncio.client import ApiClient
from traitlets.config import Config

from tests.pods import env_of

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("kube_reset")]

TOKEN = "kbase-token-from-auth-state-0123456789"
API_TOKEN = "hub-api-token-for-alice-0123456789"


async def pod_dict(spawner: BERDLSpawner) -> dict[str, Any]:
    pod = await spawner.get_pod_manifest()
    async with ApiClient() as client:
        return client.sanitize_for_serialization(pod)


def container(pod: dict[str, Any], name: str = "notebook", kind: str = "containers") -> dict[str, Any]:
    return next(c for c in pod["spec"][kind] if c["name"] == name)


# --- credentials ---------------------------------------------------------------------------------------


async def test_after_the_auth_state_hook_the_pod_holds_no_credential_only_references(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    spawner = make_spawner(token=None, api_token=API_TOKEN)
    await spawner.run_auth_state_hook({"kbase_token": TOKEN})
    pod = await pod_dict(spawner)
    text = json.dumps(pod)
    assert TOKEN not in text
    assert API_TOKEN not in text
    env = env_of(container(pod))
    name = f"{spawner.pod_name}-credentials"
    for variable, key in [
        ("KBASE_AUTH_TOKEN", "KBASE_AUTH_TOKEN"),
        ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_TOKEN"),
        ("JPY_API_TOKEN", "JUPYTERHUB_API_TOKEN"),
    ]:
        assert env[variable] == {"secretKeyRef": {"name": name, "key": key}}
    # No MinIO keys were fetched: no reference to a key the Secret would not hold.
    assert "MINIO_ACCESS_KEY" not in env
    assert spawner.credential_values() == {"KBASE_AUTH_TOKEN": TOKEN, "JUPYTERHUB_API_TOKEN": API_TOKEN}


async def test_an_operator_cannot_set_a_credential_in_plain_text(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    spawner = make_spawner(environment={"KBASE_AUTH_TOKEN": "operator-value", "MINIO_SECRET_KEY": "x"})
    await spawner.run_auth_state_hook({"kbase_token": TOKEN})
    env = env_of(container(await pod_dict(spawner)))
    assert env["KBASE_AUTH_TOKEN"] == {
        "secretKeyRef": {"name": f"{spawner.pod_name}-credentials", "key": "KBASE_AUTH_TOKEN"}
    }
    assert "MINIO_SECRET_KEY" not in env


async def test_the_secret_manifest_holds_base64_values_and_is_owned_by_the_pod() -> None:
    secret = credentials.CredentialsSecret(
        lambda: {"KBASE_AUTH_TOKEN": "tok€n", "JUPYTERHUB_API_TOKEN": "api"}
    )
    pod = ServerPod("jupyter-alice", "berdl", "0f1e2d3c", {"component": "singleuser-server"})
    body = secret.body(pod)
    assert body is not None
    body = server_objects.placed(secret, body, pod)
    assert body["apiVersion"] == "v1"
    assert body["kind"] == "Secret"
    assert body["metadata"]["name"] == "jupyter-alice-credentials"
    assert body["metadata"]["labels"] == {"component": "singleuser-server"}
    assert body["data"] == {"KBASE_AUTH_TOKEN": "dG9r4oKsbg==", "JUPYTERHUB_API_TOKEN": "YXBp"}
    (owner,) = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", "jupyter-alice", "0f1e2d3c")
    with pytest.raises(ValueError, match="PATH"):
        credentials.body({"PATH": "/bin"})


async def test_without_the_servers_api_token_no_secret_is_made() -> None:
    """A hub that restarted knows the user's KBase token but not the server's API token nor its MinIO
    keys: a Secret made then would hold less than the notebook started with."""
    secret = credentials.CredentialsSecret(lambda: {"KBASE_AUTH_TOKEN": "token"})
    assert secret.body(ServerPod("jupyter-alice", "berdl", "0f1e2d3c")) is None


# --- KubeSpawner's promises ----------------------------------------------------------------------------


async def test_the_operators_environment_wins_over_berdls_defaults(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    chosen = {
        "HOME": "/srv/home",
        "JUPYTER_CONFIG_DIR": "/etc/jupyter",
        "JUPYTER_DATA_DIR": "/srv/data",
        "JUPYTER_RUNTIME_DIR": "/run/jupyter",
        "SPARK_DRIVER_HOST": "driver.example.org",
    }
    env = env_of(container(await pod_dict(make_spawner(environment=chosen))))
    assert {name: env[name] for name in chosen} == chosen
    defaults = env_of(container(await pod_dict(make_spawner())))
    assert defaults["HOME"] == "/home/alice"
    assert defaults["SPARK_DRIVER_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}


async def test_uid_none_uses_the_images_user_and_forces_no_owner(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    spawner = make_spawner(
        uid=None, gid=None, home_volume_type="pvc", home_claim_name="homes", home_sub_path="{username}"
    )
    pod = await pod_dict(spawner)
    notebook = container(pod)
    assert "runAsUser" not in notebook["securityContext"]
    assert "runAsNonRoot" not in notebook["securityContext"]  # the image's user may be anyone
    init = container(pod, manifest.INIT_CONTAINER_NAME, "initContainers")
    assert "runAsUser" not in init["securityContext"]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = env_of(init)
    assert "BERDL_UID" not in env  # berdl-init takes the home's owner
    assert "BERDL_GID" not in env


async def test_uid_none_with_a_home_made_by_root_is_refused_naming_uid(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    with pytest.raises(ValueError, match=r"^uid None"):
        await pod_dict(make_spawner(uid=None))  # hostPath DirectoryOrCreate: berdl-init starts as root


async def test_reserved_names_are_refused_not_dropped(make_spawner: Callable[..., BERDLSpawner]) -> None:
    init = {"name": manifest.INIT_CONTAINER_NAME, "image": "busybox:1"}
    with pytest.raises(ValueError, match="init_containers: the name 'berdl-init' is BERDL's own"):
        await pod_dict(make_spawner(init_containers=[init]))
    volume = {"name": manifest.HOME_VOLUME, "emptyDir": {}}
    with pytest.raises(ValueError, match=r"volumes: the names \['berdl-home'\] are BERDL's own"):
        await pod_dict(make_spawner(volumes=[volume]))
    with pytest.raises(ValueError, match="berdl-init-tmp"):
        await pod_dict(make_spawner(volumes={"scratch": {"name": manifest.INIT_TMP_VOLUME, "emptyDir": {}}}))


async def test_image_is_required(make_spawner: Callable[..., BERDLSpawner]) -> None:
    spawner = make_spawner(image="")
    with pytest.raises(ValueError, match=r"BERDLSpawner\.image is not set"):
        await pod_dict(spawner)
    assert spawner.trait_defaults("image") == ""  # not KubeSpawner's generic singleuser image


async def test_delete_pvc_is_off_and_deleting_a_user_deletes_no_claim(
    make_spawner: Callable[..., BERDLSpawner], all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = make_spawner(home_volume_type="pvc", home_claim_name="claim-{username}")
    assert spawner.delete_pvc is False
    await spawner.delete_forever()  # no Kubernetes API here: a delete would fail
    assert "Not deleting pvc" in all_logs.text


async def test_the_notebook_container_is_protected_and_guaranteed_resources(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    notebook = container(await pod_dict(make_spawner()))
    assert notebook["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 100,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
    }
    resources = notebook["resources"]
    assert resources["requests"] == {"cpu": 0.5, "memory": 2 * 2**30}
    assert resources["limits"] == {"cpu": 4.0, "memory": 16 * 2**30}
    # The operator's container_security_context wins, key by key; uid 0 is not marked non-root.
    own = container(
        await pod_dict(make_spawner(uid=0, container_security_context={"capabilities": {"add": ["CHOWN"]}}))
    )
    assert own["securityContext"]["capabilities"] == {"add": ["CHOWN"]}
    assert "runAsNonRoot" not in own["securityContext"]


async def test_image_pull_secrets_and_node_scheduling_are_kubespawners_own(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    spawner = make_spawner(
        image_pull_secrets=["ghcr-pull"],
        node_selector={"berdl/pool": "notebooks"},
        tolerations=[{"key": "berdl/notebooks", "operator": "Exists", "effect": "NoSchedule"}],
    )
    spec = (await pod_dict(spawner))["spec"]
    assert spec["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert spec["nodeSelector"] == {"berdl/pool": "notebooks"}
    assert spec["tolerations"] == [{"key": "berdl/notebooks", "operator": "Exists", "effect": "NoSchedule"}]


# --- timeouts and the check at hub load ----------------------------------------------------------------


async def test_the_defaults_pass_the_check_with_room_for_an_image_pull() -> None:
    config = Config()
    config.BERDLSpawner.spark_cluster_manager_url = "http://spark:8000"
    BERDLSpawner.check_config(config)
    traits = BERDLSpawner.class_traits()
    room = traits["start_timeout"].default() - traits["spark_create_timeout"].default()
    room -= traits["init_time_budget"].default()
    assert room >= 30
    assert traits["start_timeout"].default() == 480


@pytest.mark.parametrize("section", ["BERDLSpawner", "KubeSpawner", "Spawner"])
async def test_a_start_timeout_too_short_is_refused_naming_the_values(section: str) -> None:
    config = Config()
    config[section].start_timeout = 200
    config.BERDLSpawner.spark_cluster_manager_url = "http://spark:8000"
    with pytest.raises(SpawnerConfigError) as raised:
        BERDLSpawner.check_config(config)
    assert raised.value.problems == [
        "start_timeout 200 s must be longer than spark_create_timeout 180 s + init_time_budget 150 s "
        "= 330 s, with room left for an image pull"
    ]


async def test_without_spark_only_berdl_init_counts() -> None:
    config = Config()
    config.KubeSpawner.start_timeout = 200
    BERDLSpawner.check_config(config)
    config.BERDLSpawner.init_time_budget = 250.0
    with pytest.raises(
        SpawnerConfigError, match="start_timeout 200 s must be longer than init_time_budget 250 s"
    ):
        BERDLSpawner.check_config(config)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "600",
            "init_environment BERDL_VENV_RESTORE_TIMEOUT 600 s is longer than the 120 s that "
            "init_time_budget 150 s leaves for the package restore; raise init_time_budget instead "
            "(the spawner derives the restore's bound from it)",
        ),
        ("two minutes", "init_environment BERDL_VENV_RESTORE_TIMEOUT must be seconds, got 'two minutes'"),
    ],
)
async def test_a_restore_timeout_set_past_the_init_budget_is_refused(value: str, problem: str) -> None:
    config = Config()
    config.BERDLSpawner.init_environment = {"BERDL_VENV_RESTORE_TIMEOUT": value}
    with pytest.raises(SpawnerConfigError) as raised:
        BERDLSpawner.check_config(config)
    assert raised.value.problems == [problem]
    config.BERDLSpawner.init_environment = {"BERDL_VENV_RESTORE_TIMEOUT": "90"}
    BERDLSpawner.check_config(config)  # a shorter restore than the budget allows is the operator's choice


async def test_uid_none_is_refused_at_hub_load_where_berdl_init_runs_as_root() -> None:
    config = Config()
    config.KubeSpawner.uid = None
    with pytest.raises(SpawnerConfigError, match="uid None"):
        BERDLSpawner.check_config(config)
    config.BERDLSpawner.home_volume_type = "pvc"
    BERDLSpawner.check_config(config)  # berdl-init runs as the image's user on a claim


async def test_the_start_timeout_default_is_berdls(make_spawner: Callable[..., BERDLSpawner]) -> None:
    assert make_spawner().start_timeout == 480


async def test_the_hub_and_berdl_init_agree_on_the_longest_restore() -> None:
    """The two programs never import each other; the hub derives BERDL_VENV_RESTORE_TIMEOUT from
    init_time_budget and must never hand berdl-init one it refuses (exit 2 at every start)."""
    from berdl_init.settings import MAX_VENV_RESTORE_TIMEOUT, Settings

    assert manifest.MAX_RESTORE_TIMEOUT == MAX_VENV_RESTORE_TIMEOUT
    assert manifest.restore_timeout(10**6) == MAX_VENV_RESTORE_TIMEOUT
    field = Settings.model_fields["venv_restore_timeout"]
    assert any(getattr(rule, "le", None) == MAX_VENV_RESTORE_TIMEOUT for rule in field.metadata)


async def test_the_spawner_reads_the_token_under_the_key_the_authenticator_writes() -> None:
    from berdl_hub.auth import TOKEN_KEY

    assert BERDLSpawner.class_traits()["auth_state_token_key"].default_value == TOKEN_KEY


async def test_no_hub_secret_can_be_forwarded_to_a_user_pod(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    from berdl_hub.hub_secrets import HUB_ONLY_VARIABLES, SECRET_NAMES

    assert set(SECRET_NAMES) <= HUB_ONLY_VARIABLES
    for name in sorted(HUB_ONLY_VARIABLES):
        with pytest.raises(ValueError, match=f"must not name hub secrets: {name}"):
            make_spawner(hub_env_to_forward=["MINIO_ENDPOINT_URL", name])
