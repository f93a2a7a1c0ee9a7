"""The KBase Auth2 stand-in the real-hub tests log in against: one for the test session, with its users.

alice may log in; ada is also a hub admin. Test modules that need users of their own add them to AUTH2
(localhub/standins/kbase_auth2.py); the `auth2_url` fixture (conftest.py) serves it.
"""

from __future__ import annotations

from localhub.standins.kbase_auth2 import ADMIN_ROLE, APPROVED_ROLE, KBaseAuth2

AUTH2 = KBaseAuth2()
ALICE_KBASE_TOKEN = AUTH2.add_user("alice", customroles=[APPROVED_ROLE])
ADA_KBASE_TOKEN = AUTH2.add_user("ada", customroles=[APPROVED_ROLE, ADMIN_ROLE])
