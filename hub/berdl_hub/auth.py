"""KBase login: `KBaseAuthenticator` (entry point `kbase`) and the hub's login page that uses it.

Users log in on KBase's own page, which leaves their token in the `kbase_session` cookie (or
`kbase_session_backup`); the hub never sees a password. The authenticator checks that token against
KBase Auth2, lets in users holding an approved custom role (and, by default, who logged in with a second
factor), makes hub admins from admin roles, and keeps the token in the encrypted auth state, where
BERDLSpawner reads it. Every refusal is a page that says what to do, never a traceback; the token never
appears in a page or a log line.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlsplit

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from markupsafe import Markup
from tornado import web
from tornado.httputil import url_concat
from traitlets import Bool, Float, List, Unicode, default

from berdl_hub.kbase_auth2 import Auth2Client, Auth2Unavailable, InvalidToken, KBaseLogin

SESSION_COOKIES = ("kbase_session", "kbase_session_backup")
# The key BERDLSpawner.auth_state_token_key reads by default.
TOKEN_KEY = "kbase_token"


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
    """`/hub/login`: logs in from the KBase cookie, or shows where to get one."""

    async def get(self) -> None:
        authenticator: KBaseAuthenticator = self.authenticator
        user = self.current_user
        if user:
            # As JupyterHub's own login page does: a fresh login cookie, then on to where the user was going.
            self.set_login_cookie(user)
            self.redirect(self.get_next_url(user), permanent=False)
            return
        if authenticator.session_token(self) is None:
            html = await self.render_template(
                "login.html",
                login_service=authenticator.login_service,
                authenticator_login_url=authenticator.kbase_login_link(self),
                announcement_login=self.not_logged_in_announcement(),
            )
            self.finish(html)
            return
        user = await self.login_user()  # refusals raise readable HTTPErrors from the authenticator
        if user is None:  # a name JupyterHub refuses, or a blocked user
            raise refusal(403, "This KBase account may not use this hub.")
        self.redirect(self.get_next_url(user), permanent=False)

    def not_logged_in_announcement(self) -> str:
        """What the login page says to a user without a KBase cookie, below the operator's own login
        announcement (`JupyterHub.template_vars`: `announcement_login`, else `announcement`), which it
        must not replace."""
        notice = "You are not logged in to KBase. Log in on KBase's page, then come back."
        template_vars = self.settings.get("template_vars", {})
        operator = template_vars.get("announcement_login") or template_vars.get("announcement")
        return f"{operator}<br>{notice}" if isinstance(operator, str) and operator else notice


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

    @default("auth_url")
    def _auth_url_default(self) -> str:
        return os.environ.get("KBASE_AUTH_URL", "")

    @default("kbase_login_url")
    def _kbase_login_url_default(self) -> str:
        from_env = os.environ.get("KBASE_LOGIN_URL", "")
        if from_env or not self.auth_url:
            return from_env
        parts = urlsplit(self.auth_url)
        return f"{parts.scheme}://{parts.netloc}/login"

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
        return [("/login", KBaseLoginHandler)]

    def client(self) -> Auth2Client:
        return Auth2Client(self.auth_url, self.auth_request_timeout)

    @staticmethod
    def session_token(handler: web.RequestHandler | None) -> str | None:
        """The KBase token from the request's cookies, or None."""
        if handler is None:
            return None
        for name in SESSION_COOKIES:
            token = handler.get_cookie(name)
            if token:
                return token
        return None

    def kbase_login_link(self, handler: BaseHandler) -> str:
        """KBase's login page, with the way back to this hub's login page where it takes one."""
        request = handler.request
        next_url = handler.get_argument("next", default="")
        login = handler.settings["login_url"]
        path = url_concat(login, {"next": next_url}) if next_url else login
        back = f"{request.protocol}://{request.host}{path}"
        return self.kbase_login_url.replace("{next}", quote(back, safe=""))

    def _auth_state(self, token: str, login: KBaseLogin) -> dict[str, Any]:
        return {
            TOKEN_KEY: token,
            "token_expires": login.expires,
            "mfa": login.mfa,
            "roles": list(login.customroles),
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
        """Check the token again (JupyterHub calls this once `auth_refresh_age` has passed, and
        before a spawn). A new KBase cookie replaces the stored token; a revoked or expired token,
        a lost role or a cookie of another KBase user ends the session."""
        state = await user.get_auth_state() or {}
        # The request's KBase cookie is the user's only on their own requests: an admin starting
        # alice's server sends the admin's cookie, and must not end alice's session with it.
        cookie = self.session_token(handler) if _is_own_request(handler, user) else None
        token = cookie or state.get(TOKEN_KEY)
        if not token:
            return False
        try:
            login = await self.client().check(token)
        except InvalidToken:
            self.log.info("The KBase token of %s is no longer valid; the session ends", user.name)
            return False
        except Auth2Unavailable as error:
            # An outage says nothing about the user: keep the session on the last good check.
            self.log.warning("Could not re-check the KBase login of %s (%s); keeping it", user.name, error)
            return True
        if self.normalize_username(login.user) != user.name:
            self.log.info("The KBase cookie of %s now belongs to another user; the session ends", user.name)
            return False
        authentication = {"name": user.name, "auth_state": self._auth_state(token, login)}
        mfa_ok = not self.require_mfa or login.mfa == "Used"
        if not (mfa_ok and (self.allow_all or self._passes_allow(user.name, authentication))):
            self.log.info("%s no longer meets the hub's MFA or role requirement; the session ends", user.name)
            return False
        admin = self.is_admin(handler, authentication)
        if admin is not None:
            authentication["admin"] = admin
        return authentication

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
