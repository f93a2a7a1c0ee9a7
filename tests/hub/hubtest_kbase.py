"""The KBase Auth2 stand-in the real-hub tests log in against: one for the test session, with its users.

alice may log in; ada is also a hub admin. Test modules that need users of their own add them to AUTH2
(tests/standins/kbase_auth2.py); the `auth2_url` fixture (conftest.py) serves it.
"""

from __future__ import annotations

import secrets

from tests.standins.kbase_auth2 import KBaseAuth2

APPROVED_ROLE, ADMIN_ROLE = "BERDL_USER", "CDM_JUPYTERHUB_ADMIN"
AUTH2 = KBaseAuth2()
ALICE_KBASE_TOKEN = AUTH2.add_user(
    "alice", customroles=[APPROVED_ROLE], token="kbase-" + secrets.token_hex(16)
)
ADA_KBASE_TOKEN = AUTH2.add_user(
    "ada", customroles=[APPROVED_ROLE, ADMIN_ROLE], token="kb-" + secrets.token_hex(16)
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
