"""The people of the end-to-end stack, with fresh credentials for every run."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from localhub.standins.kbase_auth2 import TOKEN_FORM, new_token


@dataclass(frozen=True)
class User:
    name: str
    # repr=False: a failing test's report shows the users, never their credentials
    kbase_token: str = field(default_factory=new_token, repr=False)  # KBase's form: 32 base32 characters
    minio_access_key: str = field(default_factory=lambda: "minio-" + secrets.token_hex(8), repr=False)
    minio_secret_key: str = field(default_factory=lambda: "minio-secret-" + secrets.token_hex(16), repr=False)

    @property
    def minio(self) -> dict[str, str]:
        """What the governance API answers for this user's token."""
        return {
            "username": self.name,
            "access_key": self.minio_access_key,
            "secret_key": self.minio_secret_key,
        }

    @property
    def secrets(self) -> list[str]:
        return [self.kbase_token, self.minio_access_key, self.minio_secret_key]


def make_users(*names: str) -> list[User]:
    return [User(name) for name in names]


def save_users(path: Path, users: list[User]) -> None:
    """The users with their credentials (mode 0600), for a stack started again in the same folder."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps([dataclasses.asdict(user) for user in users], indent=2) + "\n")


def load_users(path: Path) -> list[User]:
    """The users save_users wrote; none when there is no such file (or it cannot be read). A token that
    is not in KBase's form (written before the stand-in issued only that form) is replaced by a new one."""
    with contextlib.suppress(OSError, ValueError, TypeError):
        users = [User(**entry) for entry in json.loads(path.read_text())]
        return [
            user
            if TOKEN_FORM.fullmatch(user.kbase_token)
            else dataclasses.replace(user, kbase_token=new_token())
            for user in users
        ]
    return []
