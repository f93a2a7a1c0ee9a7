"""The per-server Secret that carries a user's credentials into their notebook pod.

Anyone who may `get pods` in the namespace reads a pod's environment, and pod specs are not encrypted at
rest the way Secrets can be. So the user's KBase token, MinIO keys and the server's JupyterHub API token
never appear in the pod: the notebook's environment names them with `valueFrom.secretKeyRef`, and their
values live in a plain v1 Secret named after the pod, owned by the pod (Kubernetes deletes it with the
pod). The kubelet retries a container whose Secret is not there yet, so the Secret may follow the pod.

Nothing here reads spawner state: functions take plain values and return Kubernetes-JSON dicts, or talk
to the API through the `CoreV1Api` they are given. No value of a credential is ever put in a message.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

#: The variables whose values only the Secret holds. JPY_API_TOKEN is JupyterHub's older name of the
#: API token; it is set from the same key.
CREDENTIAL_KEYS = ("KBASE_AUTH_TOKEN", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "JUPYTERHUB_API_TOKEN")
KEY_OF_VARIABLE = {**{name: name for name in CREDENTIAL_KEYS}, "JPY_API_TOKEN": "JUPYTERHUB_API_TOKEN"}
SUFFIX = "-credentials"


def secret_name(pod_name: str) -> str:
    """The Secret of the pod `pod_name` (a Secret name may be 253 characters long, like a pod's)."""
    return pod_name + SUFFIX


def env_references(name: str, keys: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The notebook's environment entries that read each credential from the Secret `name`.

    `keys` maps variable name to key in the Secret (default: every credential variable).
    """
    return [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
        for variable, key in (KEY_OF_VARIABLE if keys is None else keys).items()
    ]


def manifest(
    *,
    name: str,
    values: Mapping[str, str],
    pod_name: str,
    pod_uid: str,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A v1 Secret holding `values` (base64 `data`), owned by the pod `pod_name` with uid `pod_uid`."""
    unknown = set(values) - set(CREDENTIAL_KEYS)
    if unknown:
        raise ValueError(f"not credential keys: {sorted(unknown)}")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "labels": dict(labels or {}),
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod_name,
                    "uid": pod_uid,
                    # No blockOwnerDeletion: where OwnerReferencesPermissionEnforcement is on
                    # (OpenShift), setting it needs `update` on pods/finalizers, which the hub's Role
                    # does not grant; the garbage collector deletes the Secret with the pod without it.
                    "controller": False,
                }
            ],
        },
        "data": {key: base64.b64encode(value.encode()).decode("ascii") for key, value in values.items()},
    }


class SecretError(Exception):
    """The Kubernetes API refused or did not answer a call about the Secret; `str()` holds no value."""


# Answers worth another try: the API server (or what is in front of it) was busy.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


async def _call(what: str, call: Callable[[], Awaitable[Any]], timeout: float, retry_for: float) -> None:
    """Run `call` with `timeout` per attempt, trying again after a time-out or a busy answer, with a
    growing pause, until `retry_for` seconds have passed (as KubeSpawner does with its own calls). Create
    and delete are safe to repeat: a repeated create meets the first one's Secret (409), a repeated
    delete finds none (404)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    pause = 0.1
    while True:
        try:
            await asyncio.wait_for(call(), timeout)
            return
        except asyncio.TimeoutError:
            problem = f"no answer within {timeout:g} s"
        except ApiException as exc:
            if exc.status not in _RETRY_STATUSES:
                raise
            problem = f"Kubernetes answered {exc.status} {exc.reason}"
        if loop.time() + pause > deadline:
            raise SecretError(f"{what}: {problem}, for {retry_for:g} s")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


async def create(
    api: Any, namespace: str, body: Mapping[str, Any], *, timeout: float, retry_for: float
) -> None:
    """Create the Secret; one left by an earlier pod of the same name is replaced (deleted, created)."""
    name = body["metadata"]["name"]
    what = f"creating Secret {namespace}/{name}"
    for attempt in (1, 2):
        try:
            await _call(what, lambda: api.create_namespaced_secret(namespace, dict(body)), timeout, retry_for)
            return
        except ApiException as exc:
            if exc.status != 409 or attempt == 2:
                raise SecretError(f"{what}: Kubernetes answered {exc.status} {exc.reason}") from None
        await delete(api, namespace, name, timeout=timeout, retry_for=retry_for)


async def delete(api: Any, namespace: str, name: str, *, timeout: float, retry_for: float) -> bool:
    """Delete the Secret; False when there was none (also success)."""
    what = f"deleting Secret {namespace}/{name}"
    try:
        await _call(what, lambda: api.delete_namespaced_secret(name, namespace), timeout, retry_for)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise SecretError(f"{what}: Kubernetes answered {exc.status} {exc.reason}") from None
    return True
