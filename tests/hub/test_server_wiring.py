"""berdl_hub.server_wiring: what a server's start record is made of. The sibling servers whose Spark shares
decide the last one out are the user's other BERDL servers, and only those: a server of another spawner
class holds no share, and a BERDL sibling is never left out (it would let its cluster be deleted)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from berdl_hub import server_wiring
from berdl_hub.spawner import BERDLSpawner

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("kube_reset")]


class OtherSpawner:
    """A server of the same user run by another spawner class (JupyterHub allows one per server)."""


async def test_the_siblings_are_the_users_other_berdl_servers(
    make_spawner: Callable[..., BERDLSpawner],
) -> None:
    default = make_spawner("alice")
    named = make_spawner(user=default.user, server="big")
    default.user.spawners["plain"] = OtherSpawner()
    named.saved.share.holds = True

    siblings = server_wiring.new_attempt(default).cluster.siblings()

    assert list(siblings) == [named.saved.share]
    assert [s.holds for s in server_wiring.new_attempt(named).cluster.siblings()] == [False]
