"""The Jupyter server extension (enabled by /etc/jupyter/jupyter_server_config.d/berdl-token-sync.json).

Each request the server authenticates passes through its identity provider's `get_user`, JupyterHub's
HubOAuth in a user server: the one place that sees both who made a request and its cookies. The
extension wraps that method of the server's identity provider (the wrapper returns what it returned, and
only schedules work) and hands the request's user and cookies to a `Forwarder`.

The token goes to `$JUPYTERHUB_API_URL/berdl/kbase-token` with the server's own API token
(`$JUPYTERHUB_API_TOKEN`, whose `users:activity` scope on its owner the hub asks for). At the start the
server writes the token it was started with to `~/.berdl_kbase_session`, so that a file an older server
left never holds an older token than the server's.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from . import tokenfile
from .forwarder import Forwarder, log

ENDPOINT = "/berdl/kbase-token"


def hub_sender(api_url: str, api_token: str) -> Any:
    """An async function: POST a token to the hub's endpoint, return the status (None: no answer)."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    async def send(token: str) -> int | None:
        request = HTTPRequest(
            api_url.rstrip("/") + ENDPOINT,
            method="POST",
            headers={"Authorization": f"token {api_token}", "Content-Type": "application/json"},
            body=json.dumps({"token": token}),
            request_timeout=30,
        )
        answer = await AsyncHTTPClient().fetch(request, raise_error=False)
        return answer.code if answer.code != 599 else None  # tornado's 599: no HTTP answer

    return send


def adopter(home: Path) -> Any:
    def adopt(token: str) -> None:
        os.environ["KBASE_AUTH_TOKEN"] = token  # kernels and terminals started from now on
        try:
            tokenfile.write(home, token)
        except OSError as error:
            log.warning("Could not write %s: %s", tokenfile.FILE_NAME, error.strerror)

    return adopt


def watch(identity_provider: Any, forwarder: Forwarder) -> None:
    """Wrap the identity provider's `get_user`: every authenticated request goes to `forwarder.saw`."""
    original = identity_provider.get_user

    async def get_user(handler: Any) -> Any:
        user = original(handler)
        if inspect.isawaitable(user):
            user = await user
        if user is not None:
            hub_user = getattr(user, "hub_user", None) or {}
            try:
                forwarder.saw(hub_user.get("kind"), hub_user.get("name"), handler.get_cookie)
            except Exception:  # never the request's problem
                log.exception("berdl_token_sync: a request's cookies could not be looked at")
        return user

    identity_provider.get_user = get_user


def _load_jupyter_server_extension(serverapp: Any) -> None:
    owner = os.environ.get("JUPYTERHUB_USER")
    api_url = os.environ.get("JUPYTERHUB_API_URL")
    api_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not (owner and api_url and api_token):
        log.info("berdl_token_sync: not a JupyterHub user server; nothing to do")
        return
    home = Path.home()
    current = os.environ.get("KBASE_AUTH_TOKEN")
    if tokenfile.is_token(current):
        adopter(home)(current)  # the file starts with the token this server was started with
    else:
        current = None
    forwarder = Forwarder(owner, current, hub_sender(api_url, api_token), adopter(home))
    watch(serverapp.identity_provider, forwarder)
    log.info("berdl_token_sync: forwarding %s's renewed KBase token to the hub", owner)
