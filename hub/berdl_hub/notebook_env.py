"""The environment BERDL's notebook image expects of its pod, as plain values (no spawner, no Kubernetes).

BERDL's production notebook (BERDataLakehouse/spark_notebook) checks its environment when it starts, with a
pydantic-settings class of its own (`berdl_notebook_utils.berdl_settings.BERDLSettings`), and its Spark
Connect server and profile widget read more. This module says where each of those variables comes from:

- the services' endpoints are the operator's settings (deploy/hub-settings.env), copied from the hub's
  environment by `FORWARDED`, the default of `hub_env_to_forward`;
- the facts of one server: `USER` (the KBase user name), `SPARK_CONNECT_URL` (its Service,
  `spark_connect`), the Spark cluster's sizes, the chosen profile (`BERDL_PROFILE_JSON`), and the pod's own
  address, name and resources through the downward API (`POD_FACTS`);
- the credentials come from the server's Secret (`credentials`), never as values.

`LEFT_OUT` names what production's hub sets that this one must not, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import credentials

#: The hub's variables every user pod gets by default (`hub_env_to_forward`): the endpoints the notebook
#: needs (`NOTEBOOK_NEEDS`) and the optional ones BERDL's production hub sets. Each is copied only when the
#: hub has it with a value: an empty setting in hub-settings.env means "not configured", and an empty
#: string is no valid URL, port or flag to the notebook's checks.
FORWARDED = (
    "CDM_TASK_SERVICE_URL",
    "MINIO_ENDPOINT_URL",
    "MINIO_SECURE",
    "BERDL_HIVE_METASTORE_URI",
    "DATALAKE_MCP_SERVER_URL",
    "SPARK_CLUSTER_MANAGER_API_URL",
    "GOVERNANCE_API_URL",
    "KBASE_AUTH_URL",
    "KBASE_ORIGIN",
    "TENANT_ACCESS_SERVICE_URL",
    "BERDL_REDIS_HOST",
    "BERDL_REDIS_PORT",
    "TRINO_HOST",
    "TRINO_PORT",
)

#: The operator's settings without which the notebook cannot work: the endpoints BERDLSettings requires
#: (it has no default for them), and KBASE_AUTH_URL, which the notebook's Spark Connect server needs to
#: check the token of every request (its interceptor refuses to start without it).
NOTEBOOK_NEEDS = (
    "CDM_TASK_SERVICE_URL",
    "MINIO_ENDPOINT_URL",
    "BERDL_HIVE_METASTORE_URI",
    "DATALAKE_MCP_SERVER_URL",
    "SPARK_CLUSTER_MANAGER_API_URL",
    "GOVERNANCE_API_URL",
    "KBASE_AUTH_URL",
)

#: What BERDL's production hub sets in user pods and this hub leaves out on purpose, and why.
LEFT_OUT = {
    # docker-stacks' pip setting: every `pip install` would go to ~/.local, around the venv berdl-init
    # builds in the home (the notebook's kernel), whose packages berdl-init restores after an upgrade.
    "PIP_USER": "pip would install into ~/.local instead of the home's venv that berdl-init manages",
    # docker-stacks' start.sh, started as root, renames its user to NB_USER and moves its home; here the
    # notebook runs as the user's uid from the start and berdl-init has prepared the home.
    "NB_USER": "the notebook does not start as root: there is no image user to rename",
    # docker-stacks' start.sh, as root, chowns the whole home at every start; berdl-init fixes the home
    # folder itself only, as root, and makes the rest as the user.
    "CHOWN_HOME": "berdl-init owns the home's set-up; a recursive chown at every start is what it replaced",
    # docker-stacks' server configuration makes a self-signed certificate and serves HTTPS: the hub and
    # the proxy reach the notebook over HTTP.
    "GEN_CERT": "the hub and the proxy reach the notebook over HTTP",
}

#: The Spark cluster's sizes in the notebook (SparkClusterConfig's fields, as the cluster was created).
CLUSTER_SIZES = {
    "SPARK_WORKER_COUNT": "worker_count",
    "SPARK_WORKER_CORES": "worker_cores",
    "SPARK_WORKER_MEMORY": "worker_memory",
    "SPARK_MASTER_CORES": "master_cores",
    "SPARK_MASTER_MEMORY": "master_memory",
}

#: The pod's own facts, which only the kubelet knows (the downward API): its address (the Spark driver's
#: host), its name, and the notebook container's requests and limits (a CPU value is whole cores, rounded
#: up, memory bytes: the kubelet's rule without a divisor, as production reads them).
POD_FACTS: dict[str, dict[str, Any]] = {
    "BERDL_POD_IP": {"fieldRef": {"fieldPath": "status.podIP"}},
    "BERDL_POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
    "BERDL_CPU_REQUEST": {"resourceFieldRef": {"resource": "requests.cpu"}},
    "BERDL_CPU_LIMIT": {"resourceFieldRef": {"resource": "limits.cpu"}},
    "BERDL_MEMORY_REQUEST": {"resourceFieldRef": {"resource": "requests.memory"}},
    "BERDL_MEMORY_LIMIT": {"resourceFieldRef": {"resource": "limits.memory"}},
}

#: The port of the notebook's Spark Connect server (the notebook reads it from SPARK_CONNECT_URL).
SPARK_CONNECT_PORT = 15002


#: The Spark executors connect back to the driver (the notebook) by the pod's own address.
POD_IP_AS_DRIVER_HOST = {
    "name": "SPARK_DRIVER_HOST",
    "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
}


def home_defaults(home: str) -> dict[str, str]:
    """The notebook's HOME and the Jupyter folders berdl-init prepares in it: per user, so they cannot
    be the image's static ENV (also right in a `kubectl exec` shell, which no start-up hook runs for)."""
    return {
        "HOME": home,
        "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
        "JUPYTER_DATA_DIR": f"{home}/.jupyter/data",
        "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter/runtime",
    }


def variables(
    *,
    home: str,
    forwarded: Mapping[str, str],
    spawner_env: Mapping[str, Any],
    user: str,
    profile: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The notebook's variables that are values, each source winning over those before it: BERDL's
    defaults (`home_defaults` of the home's path `home`), the hub's variables to forward, KubeSpawner's
    (`spawner_env`, where the operator's `environment` wins), then the server's own facts, which win over
    an operator's value: USER, the KBase user name (the notebook's Spark Connect server admits only that
    user's token), and the chosen profile. Never a credential, nor one of the pod's own facts, whoever
    set it: those are references (`references`)."""
    env = {**home_defaults(home), **forwarded, **spawner_env, "JUPYTERHUB_USER": user, "USER": user}
    if profile is not None:
        env["BERDL_PROFILE_JSON"] = profile_json(profile)
    return {name: value for name, value in credentials.without_values(env).items() if name not in POD_FACTS}


def references(operator_env: Mapping[str, Any], secret_entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The notebook's variables that are references: the pod's address as SPARK_DRIVER_HOST unless the
    operator's `environment` sets it, the pod's own facts (`POD_FACTS`, filled in by the kubelet), and
    `secret_entries`, those that read the credentials from the server's Secret."""
    driver_host = [] if "SPARK_DRIVER_HOST" in operator_env else [POD_IP_AS_DRIVER_HOST]
    facts = [{"name": name, "valueFrom": source} for name, source in POD_FACTS.items()]
    return driver_host + facts + secret_entries


def spark_connect_url(service: str, namespace: str) -> str:
    """Where other pods reach the server's Spark Connect server: its Service, by its cluster DNS name."""
    return f"sc://{service}.{namespace}:{SPARK_CONNECT_PORT}"


def cluster_sizes(config: Mapping[str, Any]) -> dict[str, str]:
    """The notebook's SPARK_* size variables for a cluster created with the body `config`."""
    return {name: str(config[key]) for name, key in CLUSTER_SIZES.items() if key in config}


def spark_facts(
    service: str, namespace: str, master_url: str | None, cluster_config: Mapping[str, Any]
) -> dict[str, str]:
    """The notebook's Spark variables: SPARK_CONNECT_URL of its Service, and once the cluster is known its
    SPARK_MASTER_URL and the sizes it was created with (`cluster_config`: a server that shares its user's
    cluster gets that cluster's, not its own profile's)."""
    facts = {"SPARK_CONNECT_URL": spark_connect_url(service, namespace)}
    if master_url:
        facts["SPARK_MASTER_URL"] = master_url
        facts.update(cluster_sizes(cluster_config))
    return facts


def profile_json(profile: Mapping[str, Any]) -> str:
    """BERDL_PROFILE_JSON, what the JupyterLab profile widget shows: the chosen profile's slug, name and
    description. The value is set after KubeSpawner's template expansion, so its braces are never read as
    templates and need no escaping."""
    return json.dumps(
        {
            "slug": profile.get("slug"),
            "display_name": profile.get("display_name"),
            "description": profile.get("description"),
        }
    )


def forwarded(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The hub's variables `names` that have a value, to copy into a user's pod (never the whole
    environment; an empty value counts as not configured)."""
    return {name: environ[name] for name in names if environ.get(name)}


def missing(forward: Sequence[str], environment: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The settings of `NOTEBOOK_NEEDS` a user pod would not get: neither forwarded from the hub's
    environment with a value, nor set by the operator's `environment`."""
    given = set(forwarded(forward, environ)) | {name for name, value in environment.items() if value}
    return [name for name in NOTEBOOK_NEEDS if name not in given]
