"""A password authenticator for the hub tests, loaded by the real hub from tests/hub (PYTHONPATH).

Its auth state carries a KBase token, as BERDL's real authenticator does, so the tests can show that
stored auth state still decrypts after a hub restart.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jupyterhub.auth import Authenticator


class TokenAuthenticator(Authenticator):
    """Users from $BERDL_TEST_USERS: {"name": {"password": ..., "kbase_token": ...}}."""

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        users = json.loads(os.environ["BERDL_TEST_USERS"])
        user = users.get(data.get("username", ""))
        if user is None or data.get("password") != user["password"]:
            return None
        return {"name": data["username"], "auth_state": {"kbase_token": user["kbase_token"]}}
