"""Async client of KBase Auth2: who a token belongs to, its expiry, its MFA status, the user's roles.

The part of the API the hub uses is described in docs/services.md: `GET api/V2/token` and
`GET api/V2/me`, the token itself (no scheme) in the `Authorization` header. Both are asked at once, each
bounded by one deadline covering connection, request and body. Every failure is one of two kinds,
because they call for different answers to the user: the token is no good (log in again), or the service
cannot be used right now (try again). The token is never put in an exception or a log line.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import aiohttp

from berdl_hub import metrics
from berdl_hub.services import shared_client

#: KBase's token form (docs/services.md): 160 random bits in base32, 32 characters. A value of any other
#: form is not a token: it is never sent to Auth2, whose front end may answer it with something that looks
#: like an outage (a 9,000-byte cookie meets an 8 KiB header limit: 400, no JSON).
TOKEN_FORM = re.compile(r"[A-Z2-7]{32}")


def is_token(value: object) -> TypeGuard[str]:
    """Whether `value` has KBase's token form."""
    return isinstance(value, str) and TOKEN_FORM.fullmatch(value) is not None


# Auth2's appcodes that say the token (not the service) is the problem.
INVALID_TOKEN = 10020
NO_TOKEN = 10010


class InvalidToken(Exception):
    """Auth2 says the token is invalid, expired or revoked: the user must log in again."""


class Auth2Unavailable(Exception):
    """Auth2 did not give a usable answer (down, slow, 5xx, not its JSON); says nothing about the user."""


@dataclass(frozen=True)
class KBaseLogin:
    """What Auth2 says about one token and its user."""

    user: str
    expires: float  # seconds since the epoch
    mfa: str  # "Used", "NotUsed" or "Unknown"
    customroles: tuple[str, ...]


class Auth2Client:
    def __init__(self, root_url: str, timeout: float) -> None:
        self.root_url = root_url if root_url.endswith("/") else root_url + "/"
        self.timeout = timeout

    async def _exchange(self, path: str, token: str) -> tuple[int, bytes]:
        """One GET on the hub's shared HTTP client; returns once the whole body is in."""
        headers = {"Authorization": token}
        async with shared_client().get(self.root_url + path, headers=headers) as response:
            return response.status, await response.read()

    async def _get(self, path: str, token: str) -> Mapping[str, Any]:
        try:
            status, raw = await asyncio.wait_for(self._exchange(path, token), self.timeout)
        except asyncio.TimeoutError:  # aiohttp's own time-outs are asyncio.TimeoutError too
            raise Auth2Unavailable(f"GET {path}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as error:
            raise Auth2Unavailable(f"GET {path}: {type(error).__name__}") from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Auth2Unavailable(f"GET {path}: answered {status} without a JSON object")
        if status == 200:
            return body
        problem = body.get("error")
        appcode = problem.get("appcode") if isinstance(problem, dict) else None
        if status in (400, 401) and appcode in (INVALID_TOKEN, NO_TOKEN):
            raise InvalidToken(f"GET {path}: appcode {appcode}")
        raise Auth2Unavailable(f"GET {path}: answered {status} (appcode {appcode})")

    @metrics.timed_auth2_check(InvalidToken)
    async def check(self, token: str) -> KBaseLogin:
        """Ask `api/V2/token` and `api/V2/me` at once; raise InvalidToken or Auth2Unavailable."""
        results = await asyncio.gather(
            self._get("api/V2/token", token), self._get("api/V2/me", token), return_exceptions=True
        )
        # An invalid token outranks an outage of the other call: the user can act on it.
        for result in results:
            if isinstance(result, InvalidToken):
                raise result
        for result in results:
            if isinstance(result, BaseException):
                raise result
        info, me = results
        assert isinstance(info, Mapping)
        assert isinstance(me, Mapping)
        try:
            user, expires, mfa = str(info["user"]), float(info["expires"]) / 1000, str(info["mfa"])
            roles = tuple(str(role) for role in me.get("customroles") or ())
        except (KeyError, TypeError, ValueError):
            raise Auth2Unavailable("api/V2/token answered without user, expires or mfa") from None
        if me.get("user") != user:
            raise Auth2Unavailable("api/V2/token and api/V2/me named different users")
        return KBaseLogin(user=user, expires=expires, mfa=mfa, customroles=roles)
