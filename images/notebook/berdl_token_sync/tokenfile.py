"""`~/.berdl_kbase_session`: the user's current KBase token, the file BERDL's notebook utilities read.

It holds a token the hub accepted, nothing else: the server writes it at its start (the token its
Secret gave it) and after the hub accepted a renewed one. Mode 0600 (the token is the user's KBase
credential), replaced atomically: a reader sees the old token or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

FILE_NAME = ".berdl_kbase_session"
#: KBase's token form: 160 random bits in base32, 32 characters (docs/services.md).
TOKEN_FORM = re.compile(r"[A-Z2-7]{32}")


def is_token(value: object) -> bool:
    return isinstance(value, str) and TOKEN_FORM.fullmatch(value) is not None


def write(home: Path, token: str) -> None:
    """Replace the file with `token`: a new file of mode 0600 beside it, flushed to disk, renamed over it
    (a symlink planted at the temporary name is never followed: O_EXCL|O_NOFOLLOW)."""
    if not is_token(token):
        raise ValueError("not a KBase token")
    target = home / FILE_NAME
    temporary = home / f".{FILE_NAME}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def read(home: Path) -> str | None:
    """The token in the file; None when there is none, or what is there is not a token."""
    try:
        text = (home / FILE_NAME).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return text if is_token(text) else None
