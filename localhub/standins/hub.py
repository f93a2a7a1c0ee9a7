"""What a BERDLSpawner needs of JupyterHub when it runs without one: its user and its server's row, a
spawner made as the hub makes one, the hub's stop, and a way to end the Kubernetes clients KubeSpawner
shares in a process. The spawners are built offline (`_mock=True`): give them a kube config
(kube.throwaway_kube_config) and, to start them, the URLs of the stand-ins as traits."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localhub.standins.kube import NAMESPACE

if TYPE_CHECKING:
    from berdl_hub.spawner import BERDLSpawner


@dataclass
class FakeOrmSpawner:
    """The parts of jupyterhub.orm.Spawner a spawner reads: its server's name (no server row)."""

    name: str = ""
    server: Any = None


@dataclass
class FakeUser:
    """The parts of jupyterhub.user.User the spawner uses."""

    name: str
    admin: bool = False
    auth_state: dict[str, Any] | None = None
    id: int = 1
    spawners: dict[str, Any] = field(default_factory=dict)  # server name -> spawner, as the hub keeps them

    @property
    def url(self) -> str:
        return f"/user/{self.name}/"

    async def get_auth_state(self) -> dict[str, Any] | None:
        return self.auth_state


def kbase_token(name: str) -> str:
    """The KBase token of a user's auth state, unless a test gives one."""
    return f"kbase-token-{name}-0123456789"


class _Own(enum.Enum):
    TOKEN = "the user's own token, kbase_token(name)"


def make_spawner(
    name: str = "alice",
    *,
    admin: bool = False,
    token: str | _Own | None = _Own.TOKEN,
    user: FakeUser | None = None,
    server: str = "",
    **traits: Any,
) -> BERDLSpawner:
    """A BERDLSpawner for a user's server, as the hub builds it; keyword arguments set traits.

    `token`: the KBase token in the user's auth state (by default `kbase_token(name)`; None or "": no
    auth state). `user`: an existing user (named servers of one user), else a new FakeUser; `server`: the
    server's name. The spawner is registered in `user.spawners`, as the hub keeps it.
    """
    from berdl_hub.spawner import BERDLSpawner

    if user is None:
        token = kbase_token(name) if token is _Own.TOKEN else token
        auth_state = {"kbase_token": token} if token else {}
        user = FakeUser(name=name, admin=admin, auth_state=auth_state)
    settings: dict[str, Any] = {
        "init_image": "ghcr.io/kbase/berdl-init:1.0",
        "image": "ghcr.io/kbase/berdl-notebook:1.0",
        "namespace": NAMESPACE,
        "api_token": f"hub-api-token-for-{user.name}-0123456789",
        **traits,
    }
    spawner = BERDLSpawner(_mock=True, user=user, orm_spawner=FakeOrmSpawner(server), **settings)
    user.spawners[server] = spawner
    return spawner


async def hub_stop(spawner: BERDLSpawner) -> dict[str, Any]:
    """What JupyterHub's User.stop() does, after a failed spawn as when a user stops a server: the stop,
    unless the server is gone, the post-stop hook, then clear_state(). Returns get_state(), what the hub's
    database then holds for the server (JupyterHub 5's user.py saves it after clear_state())."""
    if await spawner.poll() is None:
        await spawner.stop()
    await spawner.run_post_stop_hook()
    spawner.clear_state()
    return spawner.get_state()


async def reset_kubespawner() -> None:
    """KubeSpawner shares reflectors and API clients per process; tests end with none left.

    Run it before the Kubernetes emulator stops: an open watch would hold the server's shutdown.
    """
    from berdl_hub.services import close_shared_client
    from kubespawner import KubeSpawner, clients

    await close_shared_client()
    await KubeSpawner._stop_all_reflectors()
    KubeSpawner.reflectors.clear()
    for client in list(clients._client_cache.values()):
        await client.api_client.close()
    clients._client_cache.clear()
    clients.load_config.cache_clear()
