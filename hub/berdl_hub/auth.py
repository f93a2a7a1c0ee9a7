"""KBase login: `KBaseAuthenticator` (entry point `kbase`) and the hub's login page that uses it.

Users log in on KBase's own page, which leaves their token in the `kbase_session` cookie (or
`kbase_session_backup`); the hub never sees a password. The authenticator checks that token against
KBase Auth2, lets in users holding an approved custom role (and, by default, who logged in with a second
factor), makes hub admins from admin roles, and keeps the token in the encrypted auth state, where
BERDLSpawner reads it. Every refusal is a page that says what to do, never a traceback; the token never
appears in a page or a log line.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunparse

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler, LogoutHandler
from markupsafe import Markup
from tornado import web
from tornado.httputil import url_concat
from traitlets import Bool, Float, Integer, List, TraitError, Unicode, default, validate

from berdl_hub import auth2_limits, same_site, upstream
from berdl_hub.kbase_auth2 import Auth2Client, Auth2Unavailable, InvalidToken, KBaseLogin, is_token

SESSION_COOKIES = ("kbase_session", "kbase_session_backup")
# The key BERDLSpawner.auth_state_token_key reads by default.
TOKEN_KEY = "kbase_token"
# When Auth2 last said yes to the stored token (seconds since the epoch): the outage grace counts from it.
CHECKED_AT = "checked_at"


def refusal(status: int, text: str, link: tuple[str, str] | None = None) -> web.HTTPError:
    """An HTTPError that JupyterHub's error.html shows as a readable page: `text`, then a link.

    The same text is the log line, so it must never hold the token.
    """
    error = web.HTTPError(status, text.replace("%", "%%"))
    error.jupyterhub_message = text  # type: ignore[attr-defined]
    if link is not None:
        href, label = link
        error.jupyterhub_html_message = Markup("{} <a href='{}'>{}</a>").format(  # type: ignore[attr-defined]
            text, href, label
        )
    return error


class KBaseLoginHandler(BaseHandler):
    """`/hub/login`: logs in from the KBase cookie, or shows where to get one.

    A login from the cookie happens only on a navigation started on this site or KBase's (same_site), or
    after a round trip through this page (a link carrying the hub's XSRF token, which another site cannot
    read); and only within the client's budget of Auth2 checks (auth2_limits)."""

    async def get(self) -> None:
        authenticator: KBaseAuthenticator = self.authenticator
        user = self.current_user
        if user:
            # As JupyterHub's own login page does: a fresh login cookie, then on to where the user was going.
            self.set_login_cookie(user)
            self.redirect(self.get_next_url(user), permanent=False)
            return
        if authenticator.session_token(self) is None:
            await self.login_page(authenticator.kbase_login_link(self), NOT_LOGGED_IN)
            return
        if not (self.started_here() or self.came_back_through_this_page()):
            # Another site sent the browser here: its user did not ask to sign in. One press does it.
            await self.login_page(self.continue_link(), STARTED_ELSEWHERE)
            return
        client = authenticator.client_of(self.request)
        if not authenticator.check_rates.allow(client):
            self.log.warning("Too many KBase logins from one client; answered without asking Auth2")
            raise refusal(429, "Too many sign-in attempts from your address. Try again in a minute.")
        user = await self.login_user()  # refusals raise readable HTTPErrors from the authenticator
        if user is None:  # a name JupyterHub refuses, or a blocked user
            raise refusal(403, "This KBase account may not use this hub.")
        self.redirect(self.get_next_url(user), permanent=False)

    async def login_page(self, link: str, notice: str) -> None:
        html = await self.render_template(
            "login.html",
            login_service=self.authenticator.login_service,
            authenticator_login_url=link,
            announcement_login=_with_operator_announcement(self.settings, "announcement_login", notice),
        )
        self.finish(html)

    def started_here(self) -> bool:
        public = self.settings.get("public_url")
        origin = same_site.origin_of(urlunparse(public)) if public else ""
        return same_site.started_here(self.request.headers, origin) is True

    def came_back_through_this_page(self) -> bool:
        """The request follows the link of `continue_link`: it carries the XSRF token of this browser's
        `_xsrf` cookie, which only a page of the hub can have put in it."""
        sent = self.get_argument("_xsrf", "")
        return bool(sent) and hmac.compare_digest(sent.encode(), self.xsrf_token)

    def continue_link(self) -> str:
        query = {"_xsrf": self.xsrf_token.decode()}
        next_url = self.get_argument("next", default="")
        if next_url:
            query["next"] = next_url
        return url_concat(self.settings["login_url"], query)


class KBaseLogoutHandler(LogoutHandler):
    """`/hub/logout`: JupyterHub's logout; then KBase's logout page, or a page that links to it.

    The KBase cookie outlives the hub's session: with `auto_login`, the next person at a shared browser
    would be signed in as the last user. So the page says so and links to KBase's logout, or the browser
    is sent there (`KBaseAuthenticator.logout_to_kbase`)."""

    async def render_logout_page(self) -> None:
        authenticator: KBaseAuthenticator = self.authenticator
        if authenticator.logout_to_kbase:
            self.redirect(authenticator.kbase_logout_link(self), permanent=False)
            return
        notice = Markup(
            "You are logged out of the hub, but still logged in to KBase in this browser, which signs you "
            "in here again. On a shared computer, <a href='{}'>log out of KBase</a> too."
        ).format(authenticator.kbase_logout_link(self))
        html = await self.render_template(
            "logout.html",
            announcement_logout=_with_operator_announcement(self.settings, "announcement_logout", notice),
        )
        self.finish(html)


NOT_LOGGED_IN = "You are not logged in to KBase. Log in on KBase's page, then come back."
STARTED_ELSEWHERE = (
    "Another site sent you here. Press the button to sign in with your KBase login, or leave this page."
)


def _with_operator_announcement(settings: dict[str, Any], name: str, notice: str) -> str:
    """`notice` below the operator's own announcement (`JupyterHub.template_vars`: `name`, else
    `announcement`), which it must not replace."""
    template_vars = settings.get("template_vars", {})
    operator = template_vars.get(name) or template_vars.get("announcement")
    return (
        Markup("{}<br>{}").format(Markup(operator), notice)
        if isinstance(operator, str) and operator
        else notice
    )


class Outcome(enum.Enum):
    VALID = "valid"  # Auth2 said yes: `authentication` is the new auth model
    ENDED = "ended"  # the login is over: `reason` says why (revoked, expired, another user, a rule)
    UNKNOWN = "unknown"  # Auth2 could not say: `reason` is the outage


@dataclass(frozen=True)
class Verdict:
    """What a check of one token says about a user's login. `reason` is one line without the token."""

    outcome: Outcome
    reason: str = ""
    authentication: dict[str, Any] | None = None
    within_grace: bool = False  # UNKNOWN only: the last good check is recent enough to keep the session


class KBaseAuthenticator(Authenticator):
    """Logs users in from their KBase session cookie, checked against KBase Auth2."""

    auth_url = Unicode(
        config=True,
        help="""Root of the KBase Auth2 service, e.g. https://kbase.us/services/auth/ (with or without a
        trailing slash). Defaults to $KBASE_AUTH_URL.""",
    )
    kbase_login_url = Unicode(
        config=True,
        help="""KBase's login page, where a user without a KBase cookie is sent. `{next}` in it is replaced
        by the hub's login URL (URL-encoded), for a login page that can send the user back.
        Defaults to $KBASE_LOGIN_URL, else `/login` on the host of `auth_url`.""",
    )
    approved_roles = List(
        Unicode(),
        config=True,
        help="""KBase custom roles that may use the hub: a user needs one of them (or one of
        `admin_roles`) to log in. These are the hub's allow list; `allowed_users` adds to them.""",
    ).tag(allow_config=True)
    admin_roles = List(
        Unicode(),
        config=True,
        help="""KBase custom roles that make a user a hub admin (and let them in). When set, a user who
        loses the role loses admin at their next check; `admin_users` still makes admins by name.""",
    )
    require_mfa = Bool(
        True,
        config=True,
        help="""Refuse a login whose KBase token was not made with a second factor (Auth2's mfa
        "Used"); "NotUsed" and "Unknown" are refused.""",
    )
    auth_request_timeout = Float(
        10.0,
        config=True,
        help="Seconds each call to KBase Auth2 may take (connection, request and answer).",
    )
    auth_outage_grace = Float(
        3600.0,
        config=True,
        help="""Seconds after the last good check of a user's stored KBase token during which an Auth2
        outage keeps the session (and lets a spawn through, with `refresh_pre_spawn`). Past it, every
        refresh ends the session until Auth2 answers again. An expired token ends it at once, without
        asking Auth2. A running server is never stopped for an outage (see `revocation_check_interval`).""",
    )
    revocation_check_interval = Float(
        300.0,
        config=True,
        help="""Seconds between the hub's checks of every user with a running server, in the hub's own
        process (no service holds a token that reads the auth state). A user whose stored token is
        revoked or expired, or who no longer holds an approved role or a login with the second factor
        `require_mfa` asks for, has every server stopped (with its Secret and Spark cluster), one log
        line saying why; an Auth2 outage stops nothing. A newer token the user's server forwarded first
        keeps them running. Bound: a server is stopped within this interval, plus one round of checks
        (at most `auth_request_timeout` per four users) and the stop. 0 turns the check off.""",
    )
    check_rate_per_minute = Integer(
        30,
        config=True,
        help="""How many Auth2 checks of a token it did not choose one client may cause per minute (each is
        two calls): the cookie sign-ins at /hub/login of one client address (see `trusted_proxies`), and
        the tokens one user's servers forward. Past it the hub answers 429 without asking Auth2. The
        budget refills continuously and holds this many at once, enough for a class signing in behind one
        address; a loop gets one check every two seconds. 0: no bound.""",
    )
    trusted_proxies = List(
        Unicode(),
        list(auth2_limits.PRIVATE_NETWORKS),
        config=True,
        help="""Networks (`10.0.0.0/8`) or addresses of the proxies in front of the hub (the
        configurable-http-proxy pod, an ingress), whose X-Forwarded-For the login's rate limit believes:
        the client is the first address, walking that header back from the connection's peer, that is not
        in these. Default: loopback, the private ranges and 100.64.0.0/10, where a cluster's pods are; a
        user on a private network behind the ingress can then choose the address that is counted.""",
    )
    kbase_logout_url = Unicode(
        config=True,
        help="""KBase's logout page, linked from (or, with `logout_to_kbase`, redirected to after) the
        hub's logout. `{next}` in it is replaced by the hub's public URL (URL-encoded). Defaults to
        $KBASE_LOGOUT_URL, else `/logout` on the host of `auth_url`.""",
    )
    logout_to_kbase = Bool(
        False,
        config=True,
        help="""Send the browser to KBase's logout page (`kbase_logout_url`) after the hub's logout, rather
        than show the hub's page with a link to it. Either way, the KBase cookie that would sign the next
        person at this browser in again is KBase's to remove.""",
    )

    @default("auth_url")
    def _auth_url_default(self) -> str:
        return os.environ.get("KBASE_AUTH_URL", "")

    @default("kbase_login_url")
    def _kbase_login_url_default(self) -> str:
        return self._kbase_page("KBASE_LOGIN_URL", "/login")

    @default("kbase_logout_url")
    def _kbase_logout_url_default(self) -> str:
        return self._kbase_page("KBASE_LOGOUT_URL", "/logout")

    def _kbase_page(self, variable: str, path: str) -> str:
        from_env = os.environ.get(variable, "")
        if from_env or not self.auth_url:
            return from_env
        parts = urlsplit(self.auth_url)
        return f"{parts.scheme}://{parts.netloc}{path}"

    @validate("trusted_proxies")
    def _valid_networks(self, proposal: Any) -> list[str]:
        try:
            auth2_limits.networks(proposal.value)
        except ValueError as error:
            raise TraitError(f"trusted_proxies: {error}") from None
        return list(proposal.value)

    _check_rates: auth2_limits.ClientRates | None = None

    @property
    def check_rates(self) -> auth2_limits.ClientRates:
        """The clients' budgets of Auth2 checks (check_rate_per_minute)."""
        if self._check_rates is None:
            self._check_rates = auth2_limits.ClientRates(self.check_rate_per_minute)
        return self._check_rates

    def client_of(self, request: Any) -> str:
        """The client of a request to the hub, as `trusted_proxies` lets it be known."""
        peer = upstream.peer_address(request) or "unknown"
        forwarded = request.headers.get("X-Forwarded-For")
        return auth2_limits.client_address(peer, forwarded, auth2_limits.networks(self.trusted_proxies))

    # The KBase cookie is the login: no form to show, and after logout the hub says so instead of
    # sending the user back to a login page that would log them in again.
    @default("auto_login")
    def _auto_login_default(self) -> bool:
        return True

    # A token can be revoked at any time; check it before a spawn hands it to Spark and MinIO.
    @default("refresh_pre_spawn")
    def _refresh_pre_spawn_default(self) -> bool:
        return True

    @default("login_service")
    def _login_service_default(self) -> str:
        return "KBase"

    def get_handlers(self, app: Any) -> list[tuple[str, type[BaseHandler]]]:
        """The login and logout pages, and the endpoint where servers forward a newer token
        (token_refresh). JupyterHub gives its application only here, so the revocation check, which
        needs it (its users and proxy), is started here too; it begins once the hub runs."""
        from berdl_hub import revocation, token_refresh  # they use this module

        revocation.start(app, self)
        return [
            ("/login", KBaseLoginHandler),
            ("/logout", KBaseLogoutHandler),
            (token_refresh.PATH, token_refresh.KBaseTokenHandler),
        ]

    def client(self) -> Auth2Client:
        return Auth2Client(self.auth_url, self.auth_request_timeout)

    @staticmethod
    def session_token(handler: web.RequestHandler | None) -> str | None:
        """The KBase token from the request's cookies, or None. A value not in KBase's token form is no
        token: it is never sent to Auth2 (see kbase_auth2.TOKEN_FORM)."""
        if handler is None:
            return None
        for name in SESSION_COOKIES:
            token = handler.get_cookie(name)
            if is_token(token):
                return token
        return None

    @staticmethod
    def _public(handler: BaseHandler, path: str) -> str:
        """`path` on the hub's configured public URL (JupyterHub.public_url), never on the request's Host
        header, which the client chooses; without one, the path alone."""
        public = handler.settings.get("public_url")
        return urlunparse(public._replace(path=path, query="", fragment="")) if public else path

    def kbase_login_link(self, handler: BaseHandler) -> str:
        """KBase's login page, with the way back to this hub's login page where it takes one."""
        next_url = handler.get_argument("next", default="")
        login = handler.settings["login_url"]
        back = self._public(handler, url_concat(login, {"next": next_url}) if next_url else login)
        return self.kbase_login_url.replace("{next}", quote(back, safe=""))

    def kbase_logout_link(self, handler: BaseHandler) -> str:
        """KBase's logout page, with the hub's public URL where it takes a way back."""
        back = self._public(handler, handler.settings.get("base_url", "/"))
        return self.kbase_logout_url.replace("{next}", quote(back, safe=""))

    def _auth_state(self, token: str, login: KBaseLogin) -> dict[str, Any]:
        return {
            TOKEN_KEY: token,
            "token_expires": login.expires,
            "mfa": login.mfa,
            "roles": list(login.customroles),
            CHECKED_AT: time.time(),
        }

    def _check_mfa(self, login: KBaseLogin, handler: BaseHandler) -> None:
        if self.require_mfa and login.mfa != "Used":
            raise refusal(
                403,
                f"This hub needs a login with a second factor, and your KBase login did not use one "
                f"(MFA: {login.mfa}). Log out of KBase, then log in again through an identity provider "
                f"account that has two-factor authentication turned on.",
                (self.kbase_login_link(handler), "Log in to KBase again"),
            )

    async def authenticate(
        self, handler: BaseHandler, data: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        token = self.session_token(handler)
        if token is None:
            return None
        try:
            login = await self.client().check(token)
        except InvalidToken:
            self.log.info("A KBase token was refused by Auth2 (invalid, expired or revoked)")
            raise refusal(
                401,
                "Your KBase login has expired or was revoked.",
                (self.kbase_login_link(handler), "Log in to KBase again"),
            ) from None
        except Auth2Unavailable as error:
            self.log.warning("KBase Auth2 could not check a login: %s", error)
            raise refusal(
                503, "KBase's login service is not answering right now. Try again in a minute."
            ) from None
        self._check_mfa(login, handler)
        self.log.info(
            "KBase user %s (MFA %s, roles %s) authenticated", login.user, login.mfa, login.customroles
        )
        return {"name": login.user, "auth_state": self._auth_state(token, login)}

    def _entry_roles(self) -> set[str]:
        return set(self.approved_roles) | set(self.admin_roles)

    def check_allowed(self, username: str, authentication: dict[str, Any] | None = None) -> bool:
        """The approved roles are the allow list (JupyterHub 5 lets nobody in without one)."""
        if super().check_allowed(username, authentication):
            return True
        roles = set(((authentication or {}).get("auth_state") or {}).get("roles") or ())
        if roles & self._entry_roles():
            return True
        needed = ", ".join(sorted(self._entry_roles())) or "(none configured)"
        raise refusal(
            403,
            f"Your KBase account ({username}) has none of the roles this hub needs: {needed}. "
            f"Ask the KBase administrators for one of them.",
        )

    def is_admin(self, handler: BaseHandler | None, authentication: dict[str, Any]) -> bool | None:
        if not self.admin_roles:
            upstream_answer: bool | None = super().is_admin(handler, authentication)
            return upstream_answer
        roles = set((authentication.get("auth_state") or {}).get("roles") or ())
        return authentication["name"] in self.admin_users or bool(roles & set(self.admin_roles))

    async def refresh_user(self, user: Any, handler: BaseHandler | None = None) -> bool | dict[str, Any]:
        """Check the login again (JupyterHub calls this once `auth_refresh_age` has passed, and before a
        spawn). A new KBase cookie of the same user replaces the stored token; a revoked or expired token,
        a lost role or a cookie of another KBase user ends the session. A cookie Auth2 cannot check is set
        aside: the stored token decides, and an outage keeps the session only within `auth_outage_grace`."""
        state = await user.get_auth_state() or {}
        # The request's KBase cookie is the user's only on their own requests: an admin starting
        # alice's server sends the admin's cookie, and must not end alice's session with it.
        cookie = self.session_token(handler) if _is_own_request(handler, user) else None
        if cookie and cookie != state.get(TOKEN_KEY):
            verdict = await self.judge(user.name, cookie, handler)
            if verdict.outcome is Outcome.VALID:
                self._give_running_servers(user, cookie)
            if verdict.outcome is not Outcome.UNKNOWN:
                return self._refresh_answer(user, verdict)
            # A value the user sent is never a success by default: the stored token decides.
            self.log.info("The KBase cookie of %s could not be checked (%s)", user.name, verdict.reason)
        return self._refresh_answer(user, await self.judge_stored(user.name, state, handler))

    _handing_over: ClassVar[set[asyncio.Task[int]]] = set()

    def _give_running_servers(self, user: Any, token: str) -> None:
        """A renewed token this refresh accepted goes to the user's running servers too (their memory and
        Secrets, token_refresh.give_running_servers), in the background: the request does not wait for
        Kubernetes."""
        from berdl_hub import token_refresh  # it imports this module

        task = asyncio.ensure_future(token_refresh.give_running_servers(user, token, self.log))
        self._handing_over.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._handing_over.discard)

    def _refresh_answer(self, user: Any, verdict: Verdict) -> bool | dict[str, Any]:
        if verdict.outcome is Outcome.VALID:
            assert verdict.authentication is not None
            return verdict.authentication
        if verdict.outcome is Outcome.UNKNOWN and verdict.within_grace:
            self.log.warning(
                "Could not re-check the KBase login of %s (%s); keeping it", user.name, verdict.reason
            )
            return True
        self.log.info("The session of %s ends: %s", user.name, verdict.reason)
        return False

    async def judge(self, username: str, token: str, handler: BaseHandler | None = None) -> Verdict:
        """What Auth2 says of `token` as `username`'s login: valid (and the auth model), ended (why), or
        unknown (an outage). The one place a token is checked against the hub's rules."""
        try:
            login = await self.client().check(token)
        except InvalidToken:
            return Verdict(Outcome.ENDED, "Auth2 says the KBase token is invalid, expired or revoked")
        except Auth2Unavailable as error:
            return Verdict(Outcome.UNKNOWN, str(error))
        if self.normalize_username(login.user) != username:
            return Verdict(Outcome.ENDED, "the KBase token belongs to another KBase user")
        authentication: dict[str, Any] = {"name": username, "auth_state": self._auth_state(token, login)}
        if self.require_mfa and login.mfa != "Used":
            return Verdict(Outcome.ENDED, f"the KBase login did not use a second factor (MFA {login.mfa})")
        if not (self.allow_all or self._passes_allow(username, authentication)):
            return Verdict(Outcome.ENDED, "the KBase account no longer holds a role this hub needs")
        admin = self.is_admin(handler, authentication)
        if admin is not None:
            authentication["admin"] = admin
        return Verdict(Outcome.VALID, authentication=authentication)

    async def judge_stored(
        self, username: str, state: dict[str, Any], handler: BaseHandler | None = None
    ) -> Verdict:
        """`judge` of the token in a user's auth state; an expired one ends the login without asking
        Auth2, and an outage is within the grace while the last good check is recent enough."""
        token = state.get(TOKEN_KEY)
        if not token:
            return Verdict(Outcome.ENDED, "no KBase token is stored")
        expires = state.get("token_expires")
        if isinstance(expires, (int, float)) and expires <= time.time():
            return Verdict(Outcome.ENDED, "the stored KBase token has expired")
        verdict = await self.judge(username, token, handler)
        if verdict.outcome is not Outcome.UNKNOWN:
            return verdict
        checked_at = state.get(CHECKED_AT)
        recent = isinstance(checked_at, (int, float)) and time.time() - checked_at <= self.auth_outage_grace
        if recent:
            return Verdict(Outcome.UNKNOWN, verdict.reason, within_grace=True)
        return Verdict(
            Outcome.UNKNOWN,
            f"Auth2 cannot check it ({verdict.reason}) and the last good check is older than "
            f"{self.auth_outage_grace:g} s",
        )

    @default("allow_existing_users")
    def _default_allow_existing_users(self) -> bool:
        # JupyterHub turns this on with any allowed_users and then adds every user who ever logged in
        # to the allow list: a user whose KBase role was taken away would stay in. The roles decide.
        return False

    def _passes_allow(self, username: str, authentication: dict[str, Any]) -> bool:
        try:
            return self.check_allowed(username, authentication)
        except web.HTTPError:
            return False


def _is_own_request(handler: web.RequestHandler | None, user: Any) -> bool:
    """Whether `handler`'s request is `user`'s own. While JupyterHub authenticates a request (the
    refresh of get_current_user), its user is not known yet, and the request is the one refreshed."""
    if handler is None:
        return False
    try:
        requester = handler.current_user
    except RuntimeError:  # JupyterHub's handlers: "Must call async get_current_user first!"
        return True
    return requester is None or getattr(requester, "name", None) == user.name
