"""Who may open a user's server: by default its user alone, not the hub's admins.

A server receives every cookie of whoever opens it, that person's KBase session cookie (their KBase token)
among them, and the server's code is its user's. JupyterHub 5 lets admins open every server: its `admin`
role holds `access:servers`, and JupyterHub refuses any change of that role's scopes. So the access to a
server is asked for with a scope of BERDL's own that only the server's user holds: JupyterHub's `user`
role is given `custom:berdl:own-servers!user` (each user holds it on themselves only), and BERDLSpawner
makes it its servers' access scope (`oauth_access_scopes`, which the server checks the OAuth token of
every visitor against). An admin who opens a user's server is refused by it (403); so is a user a
server was shared with (JupyterHub's `shares`). `BERDLSpawner.access_for_owner_only = False` gives back
JupyterHub's access scopes.

For a token to carry the scope, the server's OAuth client must be allowed to ask for it: BERDLSpawner's
`oauth_client_allowed_scopes` always holds it (`with_owners_scope`), besides what the operator allows;
JupyterHub grants each visitor the subset they hold, so only the owner's token gets it.
"""

from __future__ import annotations

from typing import Any

#: The scope a server asks its visitors for; its `!user` filter makes it each user's on themselves.
OWN_SERVERS = "custom:berdl:own-servers"
DEFINITION = {"description": "Open your own servers (BERDL: no one else's, admins included)."}
USER_ROLE = "user"


def owners_scope(username: str) -> str:
    """What a server of `username` asks its visitors for."""
    return f"{OWN_SERVERS}!user={username}"


def with_owners_scope(allowed: list[str], username: str) -> list[str]:
    """`Spawner.oauth_client_allowed_scopes` with the owner's scope in it (JupyterHub puts that list in
    the server's environment as JSON, so it stays a list)."""
    scope = owners_scope(username)
    return list(allowed) if scope in allowed else [*allowed, scope]


def give_users_their_servers(c: Any) -> None:
    """Define the scope and give it to JupyterHub's `user` role (its own `self`, and the scope on each
    user), in the hub's configuration `c`, once the operator's settings are in: a `user` role they defined
    keeps its scopes and gets this one too."""
    c.JupyterHub.custom_scopes = {**c.JupyterHub.get("custom_scopes", {}), OWN_SERVERS: DEFINITION}
    roles = [dict(role) for role in c.JupyterHub.get("load_roles", [])]
    held = f"{OWN_SERVERS}!user"
    for role in roles:
        if role.get("name") == USER_ROLE:
            scopes = list(role.get("scopes", ["self"]))
            role["scopes"] = scopes if held in scopes else [*scopes, held]
            break
    else:
        roles.append({"name": USER_ROLE, "scopes": ["self", held]})
    c.JupyterHub.load_roles = roles
