"""The environment a user's notebook gets, as BERDL's production notebook image checks it.

The notebook (BERDataLakehouse/spark_notebook) validates its environment at start with a pydantic-settings
class, `BERDLSettings` (notebook_utils/berdl_notebook_utils/berdl_settings.py). `REQUIRED` below is the
list of the variables it has no default for, with the type it checks each one against, read at
`SPARK_NOTEBOOK_COMMIT`; `PRODUCTION_SETS` the optional ones BERDL's production hub gives it. The pods
here are built by real BERDLSpawners configured as deploy/ ships them (hub-settings.env with the
operator's values filled in, the settings tree with its profiles, read by hub_config as the hub reads
them), started against the kmock Kubernetes emulator, and their environment is resolved as the kubelet
resolves it (localhub.downward: values, the credentials Secret, the downward API)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import kmock
import pytest
from berdl_hub import hub_config, notebook_env
from berdl_hub.spawner import BERDLSpawner
from berdl_hub.spawner_settings import notebook_settings_missing
from pydantic import AnyHttpUrl, AnyUrl, StringConstraints, ValidationError, create_model
from traitlets.config import Config

from localhub import downward
from localhub.standins.hub import FakeUser, kbase_token
from localhub.standins.kube import NAMESPACE
from localhub.tools import REPO
from tests.hub.hubtest_stack import Stack

pytestmark = pytest.mark.asyncio

SPARK_NOTEBOOK = "BERDataLakehouse/spark_notebook"
SPARK_NOTEBOOK_COMMIT = "3931a67c5dc6fe971f926c253f65ad3fb01f4cc0"  # of 2026-05-03
_MEMORY = Annotated[str, StringConstraints(pattern=r"^\d+[kmgKMGT]i?[bB]?$")]

#: BERDLSettings' variables without a default at SPARK_NOTEBOOK_COMMIT, and the type each is checked as.
REQUIRED: dict[str, Any] = {
    "KBASE_AUTH_TOKEN": str,
    "CDM_TASK_SERVICE_URL": AnyHttpUrl,
    "USER": str,
    "MINIO_ENDPOINT_URL": str,
    "BERDL_POD_IP": str,
    "SPARK_MASTER_URL": AnyUrl,
    "BERDL_HIVE_METASTORE_URI": AnyUrl,
    "SPARK_CLUSTER_MANAGER_API_URL": AnyHttpUrl,
    "GOVERNANCE_API_URL": AnyHttpUrl,
    "DATALAKE_MCP_SERVER_URL": AnyHttpUrl,
}
#: BERDLSettings' optional variables that production's hub sets, with their types.
PRODUCTION_SETS: dict[str, Any] = {
    "KBASE_AUTH_URL": AnyHttpUrl,
    "MINIO_ACCESS_KEY": str,
    "MINIO_SECRET_KEY": str,
    "MINIO_SECURE": bool,
    "SPARK_CONNECT_URL": AnyUrl,
    "SPARK_WORKER_COUNT": int,
    "SPARK_WORKER_CORES": int,
    "SPARK_WORKER_MEMORY": _MEMORY,
    "SPARK_MASTER_CORES": int,
    "SPARK_MASTER_MEMORY": _MEMORY,
    "TRINO_HOST": str,
    "TRINO_PORT": int,
    "TENANT_ACCESS_SERVICE_URL": AnyHttpUrl,
}
#: What else production's hub sets for the notebook and its JupyterLab extensions.
PRODUCTION_ALSO = (
    "KBASE_ORIGIN",
    "BERDL_REDIS_HOST",
    "BERDL_REDIS_PORT",
    "BERDL_PROFILE_JSON",
    *notebook_env.POD_FACTS,
)

NotebookSettings = create_model(  # type: ignore[call-overload]
    "NotebookSettings",
    **{name: (kind, ...) for name, kind in REQUIRED.items()},
    **{name: (kind | None, None) for name, kind in PRODUCTION_SETS.items()},
)

#: What an operator writes for the settings deploy/hub-settings.env ships empty (the Spark Cluster
#: Manager and the governance API are the stand-ins').
OPERATOR = {
    "KBASE_AUTH_URL": "https://ci.kbase.us/services/auth/",
    "KBASE_ORIGIN": "https://ci.kbase.us",
    "BERDL_HUB_PUBLIC_URL": "https://hub.berdl.example.org/",
    "CDM_TASK_SERVICE_URL": "http://cdm-task-service:8080",
    "MINIO_ENDPOINT_URL": "minio:9000",
    "MINIO_SECURE": "false",
    "BERDL_HIVE_METASTORE_URI": "thrift://hive-metastore:9083",
    "DATALAKE_MCP_SERVER_URL": "http://datalake-mcp-server:8000",
    "TENANT_ACCESS_SERVICE_URL": "http://tenant-access-request-service:8000",
    "BERDL_REDIS_HOST": "redis",
    "BERDL_REDIS_PORT": "6379",
    "TRINO_HOST": "trino",
    "TRINO_PORT": "8080",
}
MEDIUM = {
    "worker_count": 5,
    "worker_cores": 3,
    "worker_memory": "20GiB",
    "master_cores": 1,
    "master_memory": "2GiB",
}
LARGE = {
    "worker_count": 10,
    "worker_cores": 6,
    "worker_memory": "40GiB",
    "master_cores": 2,
    "master_memory": "8GiB",
}


def shipped_settings(stack: Stack, tmp_path: Path) -> dict[str, str]:
    """deploy/hub-settings.env as the hub's environment, with the operator's values where it is empty."""
    env = {}
    for line in (REPO / "deploy" / "hub-settings.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env.update(OPERATOR)
    env.update(
        SPARK_CLUSTER_MANAGER_API_URL=stack.spark_url,
        GOVERNANCE_API_URL=stack.governance_url,
        BERDL_HUB_CONFIG_TREE=str(REPO / "deploy" / "config" / "hub-config.yaml"),
        BERDL_HUB_SECRETS_DIR=str(tmp_path / "no-secret-files"),
        JUPYTERHUB_DB_URL=f"sqlite:///{tmp_path}/jupyterhub.sqlite",
        JUPYTERHUB_COOKIE_SECRET="ab" * 32,
        JUPYTERHUB_CRYPT_KEY="cd" * 32,
        CONFIGPROXY_AUTH_TOKEN="ef" * 32,
    )
    return env


@pytest.fixture
def hub_configured(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., BERDLSpawner]:
    """Spawners configured as the hub configures them from deploy/'s settings; the hub's environment
    (what the spawner forwards) is those settings."""
    env = shipped_settings(stack, tmp_path)
    config = Config()
    hub_config.apply(config, hub_config.load(env), env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert notebook_settings_missing(BERDLSpawner, config) == []  # the hub would not warn

    def make(name: str, *, server: str = "", owner: FakeUser | None = None, **traits: Any) -> BERDLSpawner:
        owner = owner or FakeUser(name=name, auth_state={"kbase_token": kbase_token(name)})
        stack.spark.tokens.add(kbase_token(name))
        stack.governance.credentials[kbase_token(name)] = {
            "username": name,
            "access_key": f"ak-{name}",
            "secret_key": f"sk-{name}-0123456789",
        }
        return stack.spawner(
            name, token=kbase_token(name), user=owner, server=server, config=config, **traits
        )

    return make


def resolved(stack: Stack, spawner: BERDLSpawner) -> dict[str, str]:
    """The notebook container's environment, as the kubelet gives it."""

    def live(resource: str) -> list[dict[str, Any]]:
        kind = kmock.resource(resource)
        return [o.raw for k, o in stack.k8s.objects.items() if k[0] == kind and not o.deleted]

    pod = stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, spawner.pod_name].raw
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        for s in live("v1/secrets")
    }
    allocatable = {"cpu": Decimal(32), "memory": Decimal(256 * 2**30), "ephemeral-storage": Decimal(2**40)}
    return downward.environment(
        pod,
        "notebook",
        status=pod["status"],
        secrets=secrets,
        allocatable=allocatable,
        services=live("v1/services"),
    )


def validated(env: Mapping[str, str]) -> Any:
    """The environment as BERDLSettings would read it; fails naming every variable missing or invalid."""
    try:
        return NotebookSettings.model_validate(dict(env))
    except ValidationError as error:
        message = f"the notebook of {SPARK_NOTEBOOK}@{SPARK_NOTEBOOK_COMMIT[:7]} refuses: {error}"
        raise AssertionError(message) from None


@pytest.mark.parametrize("name", ["alice", "john_doe"])
async def test_the_shipped_settings_give_the_notebook_all_it_requires(
    stack: Stack, hub_configured: Callable[..., BERDLSpawner], name: str
) -> None:
    spawner = hub_configured(name)
    await spawner.start()
    env = resolved(stack, spawner)
    validated(env)
    assert [v for v in (*REQUIRED, *PRODUCTION_SETS, *PRODUCTION_ALSO) if v not in env] == []
    pod = stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, spawner.pod_name].raw

    assert env["USER"] == name  # the KBase user name, which the Spark Connect server admits
    assert env["KBASE_AUTH_TOKEN"] == kbase_token(name)  # from the Secret
    assert kbase_token(name) not in json.dumps(pod)  # never a value in the pod
    service = re.fullmatch(rf"sc://(.+)\.{NAMESPACE}:15002", env["SPARK_CONNECT_URL"])
    assert service, env["SPARK_CONNECT_URL"]
    assert service.group(1) in stack.services()  # the Service that was really made
    assert env["BERDL_POD_IP"] == pod["status"]["podIP"]
    assert env["BERDL_POD_NAME"] == spawner.pod_name
    # Medium, the default profile: 1 CPU and 6G guaranteed, 24G at most; CPU limit BERDL's default.
    assert (env["BERDL_CPU_REQUEST"], env["BERDL_CPU_LIMIT"]) == ("1", "4")
    assert (env["BERDL_MEMORY_REQUEST"], env["BERDL_MEMORY_LIMIT"]) == (str(6 * 2**30), str(24 * 2**30))
    assert stack.spark.bodies == [MEDIUM]
    assert notebook_env.cluster_sizes(MEDIUM) == {k: env[k] for k in notebook_env.CLUSTER_SIZES}
    assert json.loads(env["BERDL_PROFILE_JSON"])["slug"] == "medium"
    assert [v for v in notebook_env.LEFT_OUT if v in env] == []  # PIP_USER, NB_USER, CHOWN_HOME, GEN_CERT
    await spawner.stop()


async def test_a_notebook_missing_a_required_variable_is_refused(
    stack: Stack, hub_configured: Callable[..., BERDLSpawner]
) -> None:
    """The check above can fail: the same pod without its downward API address is refused by name."""
    spawner = hub_configured("alice")
    await spawner.start()
    env = resolved(stack, spawner)
    del env["BERDL_POD_IP"]
    with pytest.raises(AssertionError, match="BERDL_POD_IP"):
        validated(env)
    await spawner.stop()


async def test_a_server_sharing_its_users_cluster_is_told_that_clusters_sizes(
    stack: Stack, hub_configured: Callable[..., BERDLSpawner]
) -> None:
    owner = FakeUser(name="alice", auth_state={"kbase_token": kbase_token("alice")})
    large = hub_configured("alice", owner=owner)
    large.user_options = {"profile": "large"}
    medium = hub_configured("alice", server="small", owner=owner)
    await large.start()
    await medium.start()
    assert stack.spark.bodies == [LARGE]  # one cluster, made by the first
    for spawner in (large, medium):
        env = resolved(stack, spawner)
        assert {k: env[k] for k in notebook_env.CLUSTER_SIZES} == notebook_env.cluster_sizes(LARGE)
    assert json.loads(resolved(stack, medium)["BERDL_PROFILE_JSON"])["slug"] == "medium"  # its own choice
    # A restarted hub still knows that size for the next server to join.
    state = medium.get_state()["berdl_spark"]
    assert state["cluster_config"] == LARGE
    await medium.stop()
    await large.stop()


async def test_an_admin_gets_the_admin_size_on_top_of_the_profile(
    stack: Stack, hub_configured: Callable[..., BERDLSpawner]
) -> None:
    spawner = hub_configured("ada", admin_spark_cluster_config={"worker_count": 12})
    spawner.user.admin = True
    spawner.user_options = {"profile": "large"}
    await spawner.start()
    assert stack.spark.bodies == [{**LARGE, "worker_count": 12}]
    assert resolved(stack, spawner)["SPARK_WORKER_COUNT"] == "12"
    await spawner.stop()


HOSTILE_PROFILE = {
    "display_name": 'Odd {username} }{ {{0}} %s \\u0000 "quoted"',
    "slug": "odd",
    "description": "{user.name} {0} {",
    "default": True,
}


async def test_the_profile_json_arrives_as_written(stack: Stack) -> None:
    """Braces in a profile's text are no template to KubeSpawner: BERDL_PROFILE_JSON is set after its
    expansion, and reads back as the profile."""
    spawner = stack.spawner(profile_list=[HOSTILE_PROFILE])
    await spawner.start()
    profile = json.loads(resolved(stack, spawner)["BERDL_PROFILE_JSON"])
    assert profile == {k: HOSTILE_PROFILE[k] for k in ("slug", "display_name", "description")}
    await spawner.stop()


async def test_production_s_way_of_passing_the_profile_json_is_expanded_by_kubespawner(
    make_spawner: Callable[..., BERDLSpawner], kube_reset: None
) -> None:
    """What production's hub hit (BERDL_JupyterHub #43): JSON put in `environment` is a template to
    KubeSpawner, which fails on it."""
    spawner = make_spawner(environment={"BERDL_PROFILE_JSON": notebook_env.profile_json(HOSTILE_PROFILE)})
    with pytest.raises((KeyError, IndexError, ValueError)):
        await spawner.get_pod_manifest()


async def test_the_servers_own_facts_win_over_the_operators_environment(stack: Stack) -> None:
    spawner = stack.spawner(
        environment={
            "USER": "mallory",
            "SPARK_CONNECT_URL": "sc://elsewhere.berdl:15002",
            "BERDL_POD_IP": "10.9.9.9",
            "SPARK_WORKER_COUNT": "99",
            "BERDL_PROFILE_JSON": "{{}}",
            "SOMETHING": "kept",
        }
    )
    await spawner.start()
    env = resolved(stack, spawner)
    assert env["USER"] == "alice"
    assert env["SPARK_CONNECT_URL"] == "sc://jupyter-alice.berdl:15002"
    assert env["BERDL_POD_IP"] == "127.0.0.1"  # the kubelet stand-in's pod address
    assert env["SPARK_WORKER_COUNT"] == str(spawner.spark_cluster_config["worker_count"])
    assert env["SOMETHING"] == "kept"
    pod = stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, spawner.pod_name].raw
    names = [e["name"] for c in pod["spec"]["containers"] for e in c.get("env", [])]
    assert len(names) == len(set(names))  # each variable once: no value left beside a fact
    await spawner.stop()


async def test_no_notebook_learns_other_users_names_from_their_services(stack: Stack) -> None:
    """The kubelet would give every pod variables for every Service of its namespace (service links):
    with a Service per server, bob would read alice's name. The spawner's pods turn them off."""
    alice = stack.spawner()
    await alice.start()
    bob = stack.spawner("bob", token=kbase_token("bob"))
    stack.spark.tokens.add(kbase_token("bob"))
    stack.governance.credentials[kbase_token("bob")] = {
        "username": "bob",
        "access_key": "a",
        "secret_key": "s",
    }
    await bob.start()
    env = resolved(stack, bob)
    assert [name for name in env if "ALICE" in name] == []
    pod = stack.k8s.objects[kmock.resource("v1/pods"), NAMESPACE, bob.pod_name].raw
    assert pod["spec"]["enableServiceLinks"] is False
    pod["spec"]["enableServiceLinks"] = True  # what the kubelet would otherwise do
    assert "JUPYTER_ALICE_SERVICE_HOST" in resolved(stack, bob)
    await bob.stop()
    await alice.stop()


async def test_only_the_hubs_variables_with_a_value_reach_the_pod() -> None:
    environ = {"MINIO_ENDPOINT_URL": "minio:9000", "MINIO_SECURE": "", "TRINO_HOST": "trino", "OTHER": "x"}
    assert notebook_env.forwarded(notebook_env.FORWARDED, environ) == {
        "MINIO_ENDPOINT_URL": "minio:9000",
        "TRINO_HOST": "trino",
    }


async def test_the_hub_names_every_setting_the_notebook_needs_and_lacks() -> None:
    config = Config()
    config.BERDLSpawner.hub_env_to_forward.extend(["EXTRA"])  # an operator adding a name keeps the rest
    config.KubeSpawner.environment = {"CDM_TASK_SERVICE_URL": "http://cdm:8080"}
    environ = {**OPERATOR, "MINIO_ENDPOINT_URL": "", "SPARK_CLUSTER_MANAGER_API_URL": "http://spark"}
    assert notebook_settings_missing(BERDLSpawner, config, environ) == [
        "MINIO_ENDPOINT_URL",
        "GOVERNANCE_API_URL",
    ]
    replaced = Config()
    replaced.BERDLSpawner.hub_env_to_forward = ["EXTRA"]  # a list that replaces the default forwards none
    assert notebook_settings_missing(BERDLSpawner, replaced, environ) == list(notebook_env.NOTEBOOK_NEEDS)


async def test_each_source_of_values_wins_over_those_before_it_and_no_credential_or_pod_fact_is_a_value() -> (
    None
):
    env = notebook_env.variables(
        home="/home/alice",
        forwarded={"HOME": "/hub/home", "TRINO_HOST": "hub-trino", "MINIO_ENDPOINT_URL": "minio:9000"},
        spawner_env={
            "TRINO_HOST": "operator-trino",  # the operator's `environment` wins over the hub's forwards
            "USER": "mallory",  # the server's own facts win over the operator's
            "KBASE_AUTH_TOKEN": "an-operators-stand-in",  # a credential is never a value
            "BERDL_POD_IP": "10.0.0.9",  # nor one of the pod's own facts
        },
        user="alice",
        profile={"slug": "small", "display_name": "Small", "description": "2 workers"},
    )
    assert env["HOME"] == "/hub/home"  # a forward wins over BERDL's default
    assert env["JUPYTER_CONFIG_DIR"] == "/home/alice/.jupyter"
    assert env["TRINO_HOST"] == "operator-trino"
    assert env["MINIO_ENDPOINT_URL"] == "minio:9000"
    assert (env["USER"], env["JUPYTERHUB_USER"]) == ("alice", "alice")
    assert json.loads(env["BERDL_PROFILE_JSON"])["slug"] == "small"
    assert "KBASE_AUTH_TOKEN" not in env
    assert not set(env) & set(notebook_env.POD_FACTS)


async def test_references_are_the_driver_host_unless_the_operator_sets_it_the_pod_facts_then_the_secret() -> (
    None
):
    secret = [{"name": "KBASE_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    names = [entry["name"] for entry in notebook_env.references({}, secret)]
    assert names == ["SPARK_DRIVER_HOST", *notebook_env.POD_FACTS, "KBASE_AUTH_TOKEN"]
    operator_sets = notebook_env.references({"SPARK_DRIVER_HOST": "driver.example"}, secret)
    assert "SPARK_DRIVER_HOST" not in [entry["name"] for entry in operator_sets]
