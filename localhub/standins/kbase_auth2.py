"""A KBase Auth2 stand-in: the part of the API a hub login needs (docs/services.md),
and a small login page in the place of KBase's.

API, under the service root (`{base}/services/auth/` by default):

- `GET api/V2/token` and `GET api/V2/me`, the token (no scheme) in the `Authorization` header. Tokens are
  KBase's form, 32 characters of base32 (`new_token`); the stand-in issues no other.
  Errors are Auth2's: a non-2xx status and `{"error": {"httpcode", "httpstatus", "appcode", "apperror",
  "message", "callid", "time"}}`; appcode 10020 for an invalid, expired or revoked token (401), 10010
  when no token was sent (400).

Login page, at the server's root (KBase's is at `https://kbase.us/login`, beside the services):

- `GET /login?redirect=URL` lists the known users, one button each. The reference names no parameter
  for the way back, so it is `redirect`: a path, or an http(s) URL on a loopback host.
- `POST /login` (form `user`, `redirect`) sets the `kbase_session` cookie (path `/`, no domain: on
  127.0.0.1 a cookie is shared across ports, as KBase's is across *.kbase.us) to that user's current
  token and answers 303 to `redirect`. A user whose token was revoked gets a new one, as a new KBase
  login would.
- `GET|POST /logout?redirect=URL` revokes the cookie's token and clears the cookie.

In a test: build `KBaseAuth2()`, add users (`add_user` returns the token), serve `app()` with aiohttp
(or `serve_in_thread(auth2.app())` for synchronous tests), and change it while it runs: `revoke()`,
`set_roles()`, `issue_token()`, and `fault` ("ok", "down": the connection is dropped unanswered, "slow":
answers after `slow_seconds`, "500", "non-json": a 200 whose body is an HTML page), for every call or,
with `fault_only_for`, only for the calls that send one of those tokens (a front end that fails some
requests). `on_issue` hears of every token issued (the local stack's other stand-ins accept it then).

A request whose headers are over 8 KiB is answered 400 with a plain-text body by aiohttp's own parser,
before the stand-in sees it, as a front end with the common 8 KiB header limit answers.

As a process (for the end-to-end stack and for a person)::

    python -m localhub.standins.kbase_auth2 --port 8900 --users-file users.json

users.json maps user names to their account: `{"alice": {"customroles": ["BERDL_USER"],
"mfa": "Used", "token": "A FIXED TOKEN IN KBASE'S FORM", "display": "Alice", "email": "a@example.org"}}`
(every field optional; `mfa` is "Used", "NotUsed" or "Unknown"). The process prints one line,
`kbase-auth2 stand-in: http://127.0.0.1:PORT/services/auth/`, once it accepts connections, and stops
on SIGTERM or SIGINT. A hub uses it with `JUPYTERHUB_AUTHENTICATOR_CLASS=kbase`,
`KBASE_AUTH_URL=http://127.0.0.1:PORT/services/auth/` and
`KBASE_LOGIN_URL=http://127.0.0.1:PORT/login?redirect={next}` (`kbase_env`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import re
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from aiohttp import web

MFA_STATES = ("Used", "NotUsed", "Unknown")
#: The custom roles a BERDL hub lets in, and makes admins.
APPROVED_ROLE, ADMIN_ROLE = "BERDL_USER", "CDM_JUPYTERHUB_ADMIN"
FAULTS = ("ok", "down", "slow", "500", "non-json")
DEFAULT_PREFIX = "/services/auth"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
TWO_WEEKS = 14 * 24 * 3600.0
#: KBase's token form (docs/services.md): 160 random bits in base32, 32 characters.
TOKEN_FORM = re.compile(r"[A-Z2-7]{32}")


def new_token() -> str:
    """A new token in KBase's form, as Auth2 makes one."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Account:
    user: str
    customroles: list[str]
    mfa: str
    display: str
    email: str
    current_token: str = ""


@dataclass
class Token:
    user: str
    id: str
    created: int  # ms since the epoch, as Auth2 gives them
    expires: int
    mfa: str
    revoked: bool = False


def auth2_error(
    httpcode: int, httpstatus: str, appcode: int | None, apperror: str, message: str
) -> web.Response:
    """An error answer in Auth2's shape."""
    body = {
        "error": {
            "httpcode": httpcode,
            "httpstatus": httpstatus,
            "appcode": appcode,
            "apperror": apperror,
            "message": f"{appcode} {message}" if appcode else message,
            "callid": secrets.token_hex(8),
            "time": now_ms(),
        }
    }
    return web.json_response(body, status=httpcode)


def see_other(target: str) -> web.Response:
    """A 303 to exactly `target` (aiohttp's HTTPSeeOther would re-encode its query)."""
    return web.Response(status=303, headers={"Location": target})


@dataclass
class KBaseAuth2:
    """The service's state: accounts, tokens, the fault mode, and the API calls it answered."""

    cachefor_ms: int = 300_000
    fault: str = "ok"
    slow_seconds: float = 30.0
    accounts: dict[str, Account] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)  # "GET /services/auth/api/V2/me", in order
    fault_only_for: set[str] = field(default_factory=set, repr=False)  # empty: `fault` hits every call
    on_issue: Callable[[str, str], None] | None = field(default=None, repr=False)  # (user, new token)

    def add_user(
        self,
        user: str,
        *,
        customroles: tuple[str, ...] | list[str] = (),
        mfa: str = "Used",
        display: str | None = None,
        email: str | None = None,
        token: str | None = None,
        expires_in: float = TWO_WEEKS,
    ) -> str:
        """Create an account with a first token; returns that token."""
        if mfa not in MFA_STATES:
            raise ValueError(f"mfa must be one of {MFA_STATES}, got {mfa!r}")
        self.accounts[user] = Account(
            user, list(customroles), mfa, display or user.title(), email or f"{user}@example.org"
        )
        return self.issue_token(user, token=token, expires_in=expires_in)

    def issue_token(
        self, user: str, *, mfa: str | None = None, token: str | None = None, expires_in: float = TWO_WEEKS
    ) -> str:
        """A new login token for the user (their current one from now on); returns it."""
        account = self.accounts[user]
        value = token or new_token()
        if not TOKEN_FORM.fullmatch(value):
            raise ValueError("a KBase token is 32 characters of base32 (new_token() makes one)")
        created = now_ms()
        self.tokens[value] = Token(
            user, str(uuid.uuid4()), created, created + int(expires_in * 1000), mfa or account.mfa
        )
        account.current_token = value
        if self.on_issue is not None:
            self.on_issue(user, value)
        return value

    def revoke(self, token: str) -> None:
        self.tokens[token].revoked = True

    def set_roles(self, user: str, customroles: list[str]) -> None:
        self.accounts[user].customroles = list(customroles)

    def _valid(self, token: str) -> Token | None:
        found = self.tokens.get(token)
        if found is None or found.revoked or found.expires <= now_ms():
            return None
        return found

    # --- the API ---

    def app(self, prefix: str = DEFAULT_PREFIX) -> web.Application:
        app = web.Application(middlewares=[self._faults])
        root = prefix.rstrip("/")
        app.router.add_get(f"{root}/api/V2/token", self._token_info)
        app.router.add_get(f"{root}/api/V2/me", self._me)
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_route("*", "/logout", self._logout)
        return app

    @web.middleware
    async def _faults(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(("/login", "/logout")):
            self.calls.append(f"{request.method} {request.path}")
            sent = request.headers.get("Authorization", "").strip()
            if self.fault_only_for and sent not in self.fault_only_for:
                return await handler(request)
            if self.fault == "down":
                # What a crashed pod behind a load balancer looks like: the connection ends unanswered.
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPServiceUnavailable()
            if self.fault == "slow":
                await asyncio.sleep(self.slow_seconds)
            elif self.fault == "500":
                return auth2_error(500, "Internal Server Error", None, "", "Something went wrong")
            elif self.fault == "non-json":
                return web.Response(
                    text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
                )
        return await handler(request)

    def _authorized(self, request: web.Request) -> Token | web.Response:
        token = request.headers.get("Authorization", "").strip()
        if not token:
            return auth2_error(400, "Bad Request", 10010, "No authentication token", "No user token provided")
        found = self._valid(token)
        if found is None:
            return auth2_error(401, "Unauthorized", 10020, "Invalid token", "Invalid token")
        return found

    async def _token_info(self, request: web.Request) -> web.Response:
        found = self._authorized(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(
            {
                "type": "Login",
                "id": found.id,
                "user": found.user,
                "name": None,
                "created": found.created,
                "expires": found.expires,
                "cachefor": self.cachefor_ms,
                "custom": {},
                "mfa": found.mfa,
            }
        )

    async def _me(self, request: web.Request) -> web.Response:
        found = self._authorized(request)
        if isinstance(found, web.Response):
            return found
        account = self.accounts[found.user]
        return web.json_response(
            {
                "user": account.user,
                "display": account.display,
                "email": account.email,
                "local": False,
                "roles": [],
                "customroles": list(account.customroles),
                "policyids": [],
                "idents": [],
            }
        )

    # --- the login page ---

    @staticmethod
    def _redirect_target(target: str) -> str:
        """The way back, refused unless it stays on this machine (no open redirect)."""
        target = target or "/login"
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
                raise web.HTTPBadRequest(text=f"redirect must be a path or a loopback URL, got {target!r}\n")
        elif not target.startswith("/"):
            raise web.HTTPBadRequest(text=f"redirect must be a path or a loopback URL, got {target!r}\n")
        return target

    async def _login_page(self, request: web.Request) -> web.Response:
        target = self._redirect_target(request.query.get("redirect", ""))
        buttons = "\n".join(
            f'<li><button type="submit" name="user" value="{html.escape(name)}">'
            f"Log in as {html.escape(name)}</button></li>"
            for name in sorted(self.accounts)
        )
        page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>KBase login (stand-in)</title></head>
<body><h1>KBase login (stand-in)</h1>
<form method="post" action="/login">
<input type="hidden" name="redirect" value="{html.escape(target)}">
<ul>
{buttons}
</ul>
</form></body></html>
"""
        return web.Response(text=page, content_type="text/html")

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        target = self._redirect_target(str(form.get("redirect", "")))
        user = str(form.get("user", ""))
        account = self.accounts.get(user)
        if account is None:
            raise web.HTTPBadRequest(text=f"no such user: {user!r}\n")
        token = account.current_token
        if self._valid(token) is None:
            token = self.issue_token(user)
        answer = see_other(target)
        answer.set_cookie("kbase_session", token, path="/")
        return answer

    async def _logout(self, request: web.Request) -> web.Response:
        target = self._redirect_target(request.query.get("redirect", ""))
        token = request.cookies.get("kbase_session", "")
        if token in self.tokens:
            self.revoke(token)
        answer = see_other(target)
        answer.del_cookie("kbase_session", path="/")
        return answer


@contextlib.contextmanager
def serve_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve an aiohttp app (`KBaseAuth2().app()`) from its own thread and event loop; yields its base
    URL (no trailing slash).

    For synchronous tests that drive other processes (a real hub). Change the stand-in's state from the
    test's thread only between requests: its methods are plain assignments.
    """
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, host, port)
    loop.run_until_complete(site.start())
    bound_port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="kbase-auth2", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()


def load_users(auth2: KBaseAuth2, path: Path) -> None:
    """Accounts from a users file (see the module's docstring)."""
    users: dict[str, dict[str, Any]] = json.loads(path.read_text())
    for name, account in users.items():
        auth2.add_user(
            name,
            customroles=account.get("customroles", []),
            mfa=account.get("mfa", "Used"),
            display=account.get("display"),
            email=account.get("email"),
            token=account.get("token"),
        )


def kbase_env(auth2_url: str) -> dict[str, str]:
    """The hub's KBase login settings for the stand-in at `auth2_url`."""
    return {
        "JUPYTERHUB_AUTHENTICATOR_CLASS": "kbase",
        "KBASE_AUTH_URL": f"{auth2_url}/services/auth",
        "KBASE_LOGIN_URL": f"{auth2_url}/login?redirect={{next}}",
        "KBASE_APPROVED_ROLES": APPROVED_ROLE,
        "KBASE_ADMIN_ROLES": ADMIN_ROLE,
    }


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, required=True, help="Port to listen on.")
@click.option(
    "--users-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="JSON: user name -> {customroles, mfa, token, display, email}.",
)
@click.option("--prefix", default=DEFAULT_PREFIX, show_default=True, help="Path of the service root.")
def main(host: str, port: int, users_file: Path, prefix: str) -> None:
    """Run the KBase Auth2 stand-in until SIGTERM or SIGINT."""
    auth2 = KBaseAuth2()
    try:
        load_users(auth2, users_file)
    except (ValueError, KeyError, AttributeError) as error:
        raise click.BadParameter(f"{users_file}: {error}", param_hint="--users-file") from error

    asyncio.run(run_until_signalled(auth2.app(prefix), host, port, prefix))


async def run_until_signalled(app: web.Application, host: str, port: int, prefix: str) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Printed once connections are accepted: a driver waits for this line.
    click.echo(f"kbase-auth2 stand-in: http://{host}:{port}{prefix.rstrip('/')}/")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
