"""The per-server Secret that carries a user's credentials into their notebook pod.

Anyone who may `get pods` in the namespace reads a pod's environment, and pod specs are not encrypted at
rest the way Secrets can be. So the user's KBase token, MinIO keys and the server's JupyterHub API token
never appear in the pod: the notebook's environment names them with `valueFrom.secretKeyRef`, and their
values live in a plain v1 Secret named after the pod, owned by the pod (Kubernetes deletes it with the
pod): one of the server's objects (`server_objects`), made once the pod has a uid. The kubelet retries a
container whose Secret is not there yet, so the Secret may follow the pod.

Nothing here reads spawner state: functions take plain values and return Kubernetes-JSON dicts. No value
of a credential is ever put in a message.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .server_objects import SECRET, Kind, ServerPod
from .services import MinioCredentials

#: The variables whose values only the Secret holds. JPY_API_TOKEN is JupyterHub's older name of the
#: API token; it is set from the same key.
CREDENTIAL_KEYS = ("KBASE_AUTH_TOKEN", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "JUPYTERHUB_API_TOKEN")
KEY_OF_VARIABLE = {**{name: name for name in CREDENTIAL_KEYS}, "JPY_API_TOKEN": "JUPYTERHUB_API_TOKEN"}
SUFFIX = "-credentials"


def secret_name(pod_name: str) -> str:
    """The Secret of the pod `pod_name` (a Secret name may be 253 characters long, like a pod's)."""
    return pod_name + SUFFIX


def values(
    *, api_token: str | None, kbase_token: str | None, minio: MinioCredentials | None
) -> dict[str, str]:
    """What a server's Secret holds: the JupyterHub API token, the KBase token, the MinIO keys (each
    when known)."""
    held: dict[str, str] = {}
    if api_token:
        held["JUPYTERHUB_API_TOKEN"] = api_token
    if kbase_token:
        held["KBASE_AUTH_TOKEN"] = kbase_token
    if minio is not None:
        held["MINIO_ACCESS_KEY"], held["MINIO_SECRET_KEY"] = minio.access_key, minio.secret_key
    return held


def without_values(env: Mapping[str, Any]) -> dict[str, Any]:
    """`env` without any credential variable: never a value in the pod, nor an operator's stand-in."""
    return {name: value for name, value in env.items() if name not in KEY_OF_VARIABLE}


def env_references(pod_name: str, held: Collection[str] = CREDENTIAL_KEYS) -> list[dict[str, Any]]:
    """The notebook's environment entries that read each credential the Secret of the pod `pod_name`
    holds (`held`: its keys)."""
    name = secret_name(pod_name)
    return [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
        for variable, key in KEY_OF_VARIABLE.items()
        if key in held
    ]


def body(values: Mapping[str, str]) -> dict[str, Any]:
    """A v1 Secret's content holding `values` (base64 `data`); its name and owner are added by
    `server_objects`."""
    unknown = set(values) - set(CREDENTIAL_KEYS)
    if unknown:
        raise ValueError(f"not credential keys: {sorted(unknown)}")
    return {
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode("ascii") for key, value in values.items()},
    }


def token_update(kbase_token: str) -> dict[str, Any]:
    """The change that gives a server's Secret a renewed KBase token, and keeps its other keys."""
    return {"data": {"KBASE_AUTH_TOKEN": base64.b64encode(kbase_token.encode()).decode("ascii")}}


@dataclass(frozen=True)
class CredentialsSecret:
    """The server's credentials Secret, one of its per-server objects (`server_objects.Owned`).

    `values` gives what the Secret holds now. Without the server's API token there is none to make: a
    hub that restarted knows neither that token nor the MinIO keys, and a reconcile must not make a
    Secret with less in it than the notebook was started with."""

    values: Callable[[], Mapping[str, str]]
    kind: Kind = SECRET

    def name(self, pod_name: str) -> str:
        return secret_name(pod_name)

    def namespace(self, pod_namespace: str) -> str:
        return pod_namespace  # secretKeyRef reads only the pod's own namespace

    def body(self, pod: ServerPod) -> dict[str, Any] | None:
        values = self.values()
        return body(values) if "JUPYTERHUB_API_TOKEN" in values else None
