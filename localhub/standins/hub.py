"""What a BERDLSpawner needs of JupyterHub when it runs without one: its user and its server's row, and
a way to end the Kubernetes clients KubeSpawner shares in a process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
