"""berdl-init's one-line summary of a run, as it writes it to its termination-message file: the contract
between berdl_init.termination, which writes it, and the hub, which reads it from the pod's status (the
two programs never import each other; tests/hub and tests/init each check their side of it).

    {"berdl_init": "0.1.0", "result": "failed", "exit_status": 2, "changes": 0, "warnings": 0,
     "failed_steps": [], "seconds": 0.21, "error": "invalid settings: ..."}
"""

from __future__ import annotations

import json
from typing import Any


def parse(message: str) -> dict[str, Any] | None:
    """The summary in a container's termination message, or None when the message is something else
    (the tail of a log, an older init image's, nothing)."""
    text = message.strip()
    if not text.startswith("{") or "\n" in text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict) or "berdl_init" not in document:
        return None
    return document


def error(message: str) -> str | None:
    """The line berdl-init printed about its failure, when the message is a summary that has one."""
    found = (parse(message) or {}).get("error")
    return found if isinstance(found, str) and found else None
