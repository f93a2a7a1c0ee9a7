"""Every non-public part of KubeSpawner, JupyterHub (and tornado, under it) and of the Kubernetes client
under KubeSpawner (kubernetes_asyncio, aiohttp) that BERDL leans on, in one place.

Each function names the private attribute, format or habit it relies on, and
`tests/hub/test_upstream_contract.py` pins each one at the versions in constraints.txt. An upgrade of
KubeSpawner or JupyterHub that changes one of them fails that test, and the fix is made here.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from jupyterhub.utils import maybe_future

from .server_objects import refusal

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


def kube_client(api_class: str) -> Any:
    """KubeSpawner's shared kubernetes_asyncio client of `api_class` (`kubespawner.clients.shared_client`:
    one per class and event loop, which KubeSpawner's own calls and its reflectors use too), its HTTP
    session no longer reading the environment before each request where that reading finds nothing.

    kubernetes_asyncio makes its aiohttp session with `trust_env=True` (`RESTClientObject`), so before
    every call aiohttp reads ~/.netrc and the proxy variables again, each in a thread of the loop's
    default executor: about 0.2 ms of CPU and two thread hand-offs per call, a fifth of the hub's CPU
    during 200 spawns at once (bench/README.md). A running hub's environment does not change under it,
    so when neither a netrc file nor a proxy for the API server is there now, the session stops looking
    (`ClientSession._trust_env`); a hub behind a proxy, or with a netrc, keeps looking as before. Each
    session is checked once."""
    from kubespawner.clients import shared_client

    api = shared_client(api_class)
    rest = api.api_client.rest_client
    if rest not in _env_checked:
        _env_checked.add(rest)
        if not _env_applies(api.api_client.configuration.host):
            rest.pool_manager._trust_env = False
    return api


#: The kubernetes_asyncio REST clients whose sessions `kube_client` has checked.
_env_checked: weakref.WeakSet[Any] = weakref.WeakSet()


def _env_applies(host: str) -> bool:
    """Whether aiohttp's `trust_env` finds anything for requests to `host` now: a netrc file (its
    credentials for the host, or for a proxy), or a proxy for the host (aiohttp's own look-up)."""
    from aiohttp.helpers import get_env_proxy_for_url, netrc_from_env
    from yarl import URL

    if netrc_from_env() is not None:
        return True
    try:
        get_env_proxy_for_url(URL(host))
    except LookupError:
        return False
    return True


async def create_pod(spawner: Any, pod: Any, request_timeout: float) -> dict[str, Any] | None:
    """KubeSpawner's `_make_create_pod_request` (its start retries it, with exponential_backoff, until it
    returns True), but for the answer: the created pod as the API server describes it, as a dict, not
    read into kubernetes_asyncio's models (which KubeSpawner throws away: a quarter of the hub's CPU
    when 200 spawns create their pods at once, bench/README.md). As KubeSpawner's: None after a time-out
    of the call and its answer (to try again) and for a pod of the same name still there, which it stops
    first; any other refusal raised as the client raises it, the API server's message included."""
    name = pod.metadata.name
    spawner.log.info("Attempting to create pod %s, with timeout %s", name, request_timeout)
    try:
        created = await asyncio.wait_for(_created_pod(spawner, pod), request_timeout)
    except asyncio.TimeoutError:
        return None
    if created is None:
        spawner.log.info("Found existing pod %s, attempting to kill", name)
        await spawner.stop(True)
    return created


async def _created_pod(spawner: Any, pod: Any) -> dict[str, Any] | None:
    """The pod's create and its answer: the created pod, or None for a conflict (a pod of its name)."""
    response = await spawner.api.create_namespaced_pod(spawner.namespace, pod, _preload_content=False)
    try:
        if response.status == 409:
            return None
        if not 200 <= response.status <= 299:
            raise await refusal(response)
        created: dict[str, Any] = await response.json()
        return created
    finally:
        response.release()


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


def jupyterhub_access_scopes(spawner: Any) -> list[str]:
    """JupyterHub's own default of `Spawner.oauth_access_scopes` (`Spawner._default_access_scopes`):
    `access:servers` on the server or on its user, which JupyterHub's admin role holds too."""
    return list(spawner._default_access_scopes())


async def oauth_client_scopes(spawner: Any) -> list[str]:
    """The scopes JupyterHub lets the server's OAuth client ask for
    (`Spawner._get_oauth_client_allowed_scopes`: `oauth_client_allowed_scopes`, resolved, and
    `access:servers` on the server)."""
    return list(await spawner._get_oauth_client_allowed_scopes())


def sibling_spawners(spawner: Any) -> Iterator[Any]:
    """The spawners of the user's other servers: JupyterHub keeps every server it knows in
    `user.spawners` (by server name), also after a restart, each with the state it saved."""
    spawners = getattr(spawner.user, "spawners", None) or {}
    return (other for other in spawners.values() if other is not spawner)


def jupyterhub_log_request(handler: Any) -> None:
    """JupyterHub's own handling of a finished request: its access log line and its request metrics
    (`jupyterhub.log.log_request`, the tornado `log_function` JupyterHub installs by default)."""
    from jupyterhub.log import log_request

    log_request(handler)


def is_server_api(handler: Any) -> bool:
    """Whether the request is to `/hub/api/users/NAME/server` or `.../servers/NAME` (JupyterHub's
    `apihandlers.users.UserServerAPIHandler`, whose first path argument is the user's name)."""
    from jupyterhub.apihandlers.users import UserServerAPIHandler

    return isinstance(handler, UserServerAPIHandler)


def is_proxy_api(handler: Any) -> bool:
    """Whether the request is to `/hub/api/proxy` (JupyterHub's `apihandlers.proxy.ProxyAPIHandler`;
    a POST there syncs the proxy's routes)."""
    from jupyterhub.apihandlers.proxy import ProxyAPIHandler

    return isinstance(handler, ProxyAPIHandler)


def requester(handler: Any) -> tuple[str, str] | None:
    """Who made a finished request, as ("user" or "service", name), or None (anonymous): JupyterHub's
    `handler.current_user` is its User for a user and the `orm.Service` for a service token, each with
    `kind` and `name` (the same attribute JupyterHub's own log line reads)."""
    try:
        current = handler.current_user
    except Exception:  # JupyterHub's log_request tolerates HTTPError and RuntimeError here
        return None
    kind, name = getattr(current, "kind", None), getattr(current, "name", None)
    if kind not in ("user", "service") or not isinstance(name, str):
        return None
    return str(kind), name


def stopped_by(handler: Any, request_began: datetime) -> bool:
    """Whether the DELETE of a server that `handler` answered (202 or 204) stopped it. JupyterHub answers
    204 also for a server that was not running, and 202 also for one already stopping, so the answer
    alone does not say. It did when the server is stopping now (`spawner.pending == "stop"`: this
    request's stop goes on after its answer) or when its stop ended after the request began (User.stop
    sets `orm_spawner.last_activity`, naive UTC, once a stop ends)."""
    args = list(handler.path_args)
    user = handler.find_user(args[0]) if args else None
    server_name = args[1] if len(args) > 1 else ""
    if user is None or server_name not in user.orm_spawners:
        return False
    spawner = user.spawners[server_name]
    if spawner.pending == "stop":
        return True
    ended = spawner.orm_spawner.last_activity
    return ended is not None and ended >= request_began


# --- the hub process: what the authenticator's own parts (revocation, token_refresh) use --------------


def peer_address(request: Any) -> str | None:
    """The address of the connection a request came on (tornado's `connection.context.address`), before
    JupyterHub's HTTP server rewrites `remote_ip` from X-Forwarded-For and X-Real-Ip (`xheaders=True`),
    which any client sends."""
    address = getattr(getattr(getattr(request, "connection", None), "context", None), "address", None)
    return str(address[0]) if isinstance(address, tuple) and address else None


def active_servers(user: Any) -> dict[str, Any]:
    """The user's servers that run, start or stop, by name, from `user.spawners`."""
    return {name: spawner for name, spawner in list(user.spawners.items()) if spawner.active}


def users_with_servers(app: Any) -> list[Any]:
    """The users with a server that runs or starts: every such user is in the hub's `users` (JupyterHub
    loads the users with servers at its start, `init_spawners`, and every user it spawns for)."""
    return [user for user in list(app.users.values()) if active_servers(user)]


def refresh_at_next_request(user: Any) -> None:
    """Make the user's next request check their login again (`User._auth_refreshed`, which
    `BaseHandler.refresh_auth` compares with `auth_refresh_age`)."""
    user._auth_refreshed = None


async def stop_server(app: Any, user: Any, server_name: str) -> bool:
    """Stop one server as JupyterHub's `BaseHandler.stop_single_user` does, without a request: mark the
    stop pending (`Spawner._stop_pending`, `_stop_future`: a spawn request that comes meanwhile waits for
    it), remove the route, then `User.stop` (the spawner's stop and post-stop hook, the server's API token
    and OAuth client). False when the server is starting or stopping already."""
    spawner = user.spawners.get(server_name)
    if spawner is None or not spawner.active or spawner.pending:
        return False
    spawner._stop_pending = True

    async def stop() -> None:
        try:
            await app.proxy.delete_user(user, server_name)
            await user.stop(server_name)
        finally:
            spawner._stop_future = None
            spawner._stop_pending = False

    future = spawner._stop_future = asyncio.ensure_future(stop())
    await future
    return True
