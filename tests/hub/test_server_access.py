"""Who may open a user's server (server_access): a scope of BERDL's own that only the server's user
holds, given to JupyterHub's `user` role once the operator's settings are in, and asked for by each
BERDLSpawner server. The refusal of an admin by a real server is the journey's step 7b."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from berdl_hub import server_access, upstream
from berdl_hub.spawner import BERDLSpawner
from traitlets.config import Config


def test_the_user_role_gets_the_scope_and_the_operators_roles_and_scopes_stay() -> None:
    c = Config()
    server_access.give_users_their_servers(c)
    assert c.JupyterHub.custom_scopes == {server_access.OWN_SERVERS: server_access.DEFINITION}
    assert c.JupyterHub.load_roles == [{"name": "user", "scopes": ["self", "custom:berdl:own-servers!user"]}]

    c = Config()
    c.JupyterHub.custom_scopes = {"custom:theirs": {"description": "an operator's"}}
    c.JupyterHub.load_roles = [
        {"name": "culler", "scopes": ["list:users"], "services": ["culler"]},
        {"name": "user", "scopes": ["self", "read:hub"]},
    ]
    server_access.give_users_their_servers(c)
    server_access.give_users_their_servers(c)  # twice changes nothing more
    assert set(c.JupyterHub.custom_scopes) == {"custom:theirs", server_access.OWN_SERVERS}
    assert c.JupyterHub.load_roles == [
        {"name": "culler", "scopes": ["list:users"], "services": ["culler"]},
        {"name": "user", "scopes": ["self", "read:hub", "custom:berdl:own-servers!user"]},
    ]


@pytest.mark.asyncio
@pytest.mark.usefixtures("kube_reset")
async def test_a_server_asks_for_its_users_scope_only(make_spawner: Callable[..., BERDLSpawner]) -> None:
    spawner = make_spawner("alice")
    assert spawner.oauth_access_scopes == ["custom:berdl:own-servers!user=alice"]
    # The server's OAuth client may ask for it (JupyterHub gives each visitor's token the part they hold).
    client_scopes = await upstream.oauth_client_scopes(spawner)
    assert "custom:berdl:own-servers!user=alice" in client_scopes
    spawner.oauth_client_allowed_scopes = ["read:users:name!user"]  # an operator's, kept
    client_scopes = await upstream.oauth_client_scopes(spawner)
    assert {"read:users:name!user", "custom:berdl:own-servers!user=alice"} <= set(client_scopes)
    spawner.api_token = "server-token"
    spawner.oauth_client_id = "jupyterhub-user-alice"
    env = spawner.get_env()
    assert json.loads(env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"]) == ["custom:berdl:own-servers!user=alice"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("kube_reset")
async def test_jupyterhubs_access_is_a_setting_away(make_spawner: Callable[..., BERDLSpawner]) -> None:
    spawner = make_spawner("alice", access_for_owner_only=False)
    assert spawner.oauth_access_scopes == ["access:servers!server=alice/", "access:servers!user=alice"]
    assert not any(s.startswith("custom:") for s in await upstream.oauth_client_scopes(spawner))
