"""`POST /hub/api/berdl/kbase-token`: a user's server forwards the newer KBase token its owner's browser
carries, and the hub makes it the user's token everywhere it keeps one.

Why a server forwards it: while a person works in JupyterLab, every request goes from the proxy to their
server; the hub sees none of them, so it never sees the new `kbase_session` cookie after a new KBase
login, and a `secretKeyRef` variable never changes in a running container. The notebook image's server
extension (images/notebook/berdl_token_sync) notices the new cookie on its owner's own requests and sends
it here with the server's API token.

What the hub does with it, in order:

1. the caller must be a user (not a service), authenticated for `users:activity` on themselves: the
   scope JupyterHub's `server` role gives every server's token (`users:activity!user`), and no other
   user's token or server has on them. The token is always taken as the caller's: there is no user in
   the path, so bob's server cannot name alice;
2. a bound on the checks each user's servers cause (`KBaseAuthenticator.check_rate_per_minute`);
3. Auth2 must say that the token is the caller's and that it meets the hub's role and MFA rules
   (`KBaseAuthenticator.judge`, the very check of a refresh); a token of another KBase user is refused;
4. the auth state takes it (so the next spawn, and the hub's own checks, use it); every running server
   of the user takes it (`BERDLSpawner.use_kbase_token`: in memory, for the Spark cluster's delete, and
   in the server's credentials Secret, for a restarted container).

The server writes the token to the home only after this answered 200. The request's authentication is
not refreshed from the stored token (`refresh_auth` below): a server must be able to bring a new token
exactly when the stored one has expired. The token is never logged.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from jupyterhub.apihandlers import APIHandler
from tornado import web

from berdl_hub import upstream
from berdl_hub.kbase_auth2 import is_token

if TYPE_CHECKING:
    from berdl_hub.auth import KBaseAuthenticator

#: Below the hub's prefix (`/hub/`); a server finds it at `$JUPYTERHUB_API_URL/berdl/kbase-token`.
PATH = "/api/berdl/kbase-token"


class KBaseTokenHandler(APIHandler):
    """The endpoint (see the module's description)."""

    async def refresh_auth(self, user: Any, force: bool = False) -> Any:
        # The caller is authenticated by its token; its stored KBase login is what it may be replacing.
        return user

    async def post(self) -> None:
        user = self.current_user
        if user is None or getattr(user, "kind", None) != "user":
            raise web.HTTPError(403, "Only a user's own server may forward the user's KBase token.")
        if not self.has_scope(f"users:activity!user={user.name}"):
            raise web.HTTPError(403, "Missing the users:activity scope on yourself.")
        try:
            token = (json.loads(self.request.body or b"{}") or {}).get("token")
        except (ValueError, AttributeError):
            token = None
        if not is_token(token):
            raise web.HTTPError(400, 'The body must be {"token": a KBase token}.')
        authenticator: KBaseAuthenticator = self.authenticator
        if not authenticator.check_rates.allow(f"user:{user.name}"):
            raise web.HTTPError(429, "Too many tokens forwarded; try again in a minute.")
        from berdl_hub.auth import Outcome  # auth.py imports this module

        verdict = await authenticator.judge(user.name, token)
        if verdict.outcome is Outcome.UNKNOWN:
            self.log.warning(
                "A KBase token forwarded for %s could not be checked: %s", user.name, verdict.reason
            )
            raise web.HTTPError(503, "KBase's login service is not answering; try again later.")
        if verdict.outcome is Outcome.ENDED:
            self.log.info("A KBase token forwarded for %s was refused: %s", user.name, verdict.reason)
            raise web.HTTPError(403, f"Refused: {verdict.reason}.")
        assert verdict.authentication is not None
        state = await user.get_auth_state() or {}
        state.update(verdict.authentication["auth_state"])
        await user.save_auth_state(state)
        servers = await give_running_servers(user, token, self.log)
        self.log.info("The KBase token of %s was renewed by a server (%d running)", user.name, servers)
        self.finish({"accepted": True})


async def give_running_servers(user: Any, token: str, log: Any) -> int:
    """Each running server of the user whose spawner can take a token (`use_kbase_token`) gets it;
    failures are logged, never raised (the auth state holds it already). Returns how many servers run."""
    spawners = [s for s in upstream.active_servers(user).values() if hasattr(s, "use_kbase_token")]
    results = await asyncio.gather(*(s.use_kbase_token(token) for s in spawners), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.error("Could not give the renewed KBase token to a server of %s: %s", user.name, result)
    return len(spawners)
