"""Every non-public part of KubeSpawner and JupyterHub that BERDLSpawner leans on, in one place.

Each function names the private attribute, format or habit it relies on, and
`tests/hub/test_upstream_contract.py` pins each one at the versions in constraints.txt. An upgrade of
KubeSpawner or JupyterHub that changes one of them fails that test, and the fix is made here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jupyterhub.utils import maybe_future

#: KubeSpawner names the notebook's container "notebook" in every pod it builds (objects.make_pod) and
#: reads that container's status by this name in poll().
NOTEBOOK_CONTAINER = "notebook"


def expand(spawner: Any, template: str) -> str:
    """A template expanded with KubeSpawner's fields (`{username}`, `{servername}`, `{user_server}`...),
    as KubeSpawner expands its own settings (`KubeSpawner._expand_user_properties`).

    Remembered, per spawner, for the values that expansion reads: each pod build expands the home
    templates three times, and one expansion costs a tenth of KubeSpawner's whole pod build."""
    key: tuple[Any, ...] = (template, spawner.slug_scheme, spawner.name, spawner.user.name, spawner.user.id)
    key += (spawner.pod_name, spawner.pvc_name, spawner.namespace)
    cache: dict[tuple[Any, ...], str] = spawner.__dict__.setdefault("_berdl_expanded", {})
    if key not in cache:
        cache[key] = str(spawner._expand_user_properties(template))
    return cache[key]


def pod_url(spawner: Any, pod: Mapping[str, Any]) -> str:
    """The server's URL in `pod` by KubeSpawner's own rule (pod_connect_ip, SSL, services), the one its
    start() returns (`KubeSpawner._get_pod_url`)."""
    return str(spawner._get_pod_url(pod))


def log_name(spawner: Any) -> str:
    """JupyterHub's "user" or "user:server" for log lines (`Spawner._log_name`)."""
    return str(spawner._log_name)


def reflected_pod(spawner: Any) -> dict[str, Any] | None:
    """The server's pod as KubeSpawner's pod reflector last saw it, or None (the reflector keys its pods
    "{namespace}/{name}"; poll() starts the reflector)."""
    reflector = spawner.pod_reflector
    if reflector is None:
        return None
    pod = reflector.pods.get(f"{spawner.namespace}/{spawner.pod_name}")
    return dict(pod) if pod is not None else None


def reflected_pods(spawner: Any) -> list[dict[str, Any]]:
    """Every user pod KubeSpawner's pod reflector sees (its `pods`, keyed "{namespace}/{name}"); none
    before the reflector is started (poll() and start() start it)."""
    reflector = spawner.pod_reflector
    return list(reflector.pods.values()) if reflector is not None else []


def reflected_pod_uids(spawner: Any) -> set[str]:
    """The uids of every user pod KubeSpawner's pod reflector sees in the spawner's namespace."""
    return {pod["metadata"]["uid"] for pod in reflected_pods(spawner)}


def notebook_container(containers: list[Any]) -> Any:
    """The notebook's container among a pod's containers (Kubernetes models or dicts)."""
    for container in containers:
        name = container.get("name") if isinstance(container, Mapping) else container.name
        if name == NOTEBOOK_CONTAINER:
            return container
    raise LookupError(f"the pod has no container named {NOTEBOOK_CONTAINER!r}")


async def chosen_profile(spawner: Any) -> dict[str, Any] | None:
    """The `profile_list` entry the server's user_options select, as KubeSpawner's load_user_options
    selects it (`_get_initialized_profile_list` gives missing slugs and the default,
    `_get_profile` matches the slug or takes the default); None without profiles."""
    profiles = spawner._sorted_dict_values(spawner.profile_list)
    if callable(profiles):
        profiles = await maybe_future(profiles(spawner))
    profiles = spawner._get_initialized_profile_list(profiles)
    if not profiles:
        return None
    chosen: dict[str, Any] = spawner._get_profile((spawner.user_options or {}).get("profile"), profiles)
    return chosen


async def apply_user_options(spawner: Any) -> None:
    """Apply the chosen profile now (KubeSpawner.load_user_options), so that what BERDL does before the
    pod (the Spark cluster's size) follows it. KubeSpawner's own start applies it a second time: that is
    harmless because applying a profile sets the same values again."""
    await spawner.load_user_options()


def save_state(spawner: Any) -> None:
    """Write the spawner's state to the hub's database now, in the middle of a start.

    JupyterHub saves it only once start() returns (`orm_spawner.state`, then the session's commit): a hub
    that dies in between would forget what the start already owns (a Spark cluster, its duty to delete)."""
    if spawner.orm_spawner is None or spawner.db is None:
        return
    spawner.orm_spawner.state = spawner.get_state()
    spawner.db.commit()


def sibling_spawners(spawner: Any) -> Iterator[Any]:
    """The spawners of the user's other servers: JupyterHub keeps every server it knows in
    `user.spawners` (by server name), also after a restart, each with the state it saved."""
    spawners = getattr(spawner.user, "spawners", None) or {}
    return (other for other in spawners.values() if other is not spawner)
