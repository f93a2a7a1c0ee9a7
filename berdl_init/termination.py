"""The run's one-line summary, written where the kubelet reads a container's termination message.

Kubernetes creates an empty file for every container (mode 0666, mounted at `terminationMessagePath`,
`/dev/termination-log` by default) and, when the container ends, puts what it holds (at most 4 KiB) in
the container's status as `state.terminated.message`, for a success as for a failure. With
`terminationMessagePolicy: FallbackToLogsOnError` the tail of the log is used instead only when the file
is empty. The hub reads this line back from the pod's status (berdl_hub.init_report): the run's result,
its exit status, its time. It is the contract between the two programs, which never import each other:

    {"berdl_init": "0.1.0", "result": "changed", "exit_status": 0, "changes": 3, "warnings": 0,
     "failed_steps": [], "seconds": 1.234}

`result` is `failed` (the run stopped with exit 2 or 3, or a step failed), `warned` (warnings, nothing
failed), `changed` (changes, no warning) or `unchanged`; a failed run also has `error`, the line berdl-init
printed about it. No home path, user name or template value is in it: only counts, names of steps and
the error line, which is redacted as every printed line is.

Writing it never fails the run: the file is written only when it exists and is a regular file (the
kubelet made it; on a laptop there is none, and nothing is created), without following a symlink and
without waiting on a FIFO; any error is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Sequence
from typing import Any

from berdl_init import __version__

#: Where Kubernetes mounts the file when the container does not name another (its default).
DEFAULT_PATH = "/dev/termination-log"
#: What the kubelet keeps of the file (MaxContainerTerminationMessageLength).
MAX_BYTES = 4096

RESULTS = ("changed", "unchanged", "warned", "failed")


def result_of(*, changes: int, warnings: int, failed_steps: Sequence[str], failed: bool) -> str:
    """The run's result, the worst that applies: failed, warned, changed, unchanged."""
    if failed or failed_steps:
        return "failed"
    if warnings:
        return "warned"
    return "changed" if changes else "unchanged"


def summary(
    *,
    exit_status: int,
    seconds: float,
    changes: int = 0,
    warnings: int = 0,
    failed_steps: Sequence[str] = (),
    error: str | None = None,
) -> str:
    """The one line (JSON, no newline) the module's description shows."""
    document: dict[str, Any] = {
        "berdl_init": __version__,
        "result": result_of(
            changes=changes, warnings=warnings, failed_steps=failed_steps, failed=error is not None
        ),
        "exit_status": exit_status,
        "changes": changes,
        "warnings": warnings,
        "failed_steps": list(failed_steps),
        "seconds": round(seconds, 3),
    }
    if error is not None:
        document["error"] = error
    line = json.dumps(document, ensure_ascii=False)
    if len(line.encode()) > MAX_BYTES and error is not None:
        # Only the error line can be long: shorten it, so that the kubelet keeps a whole JSON object.
        spare = len(line.encode()) - MAX_BYTES + 3
        document["error"] = error.encode()[: max(len(error.encode()) - spare, 0)].decode(errors="ignore")
        document["error"] += "..."
        line = json.dumps(document, ensure_ascii=False)
    return line


def write(path: str | os.PathLike[str] | None, line: str) -> bool:
    """Write `line` to the termination-message file at `path`, when it is an existing regular file.
    Returns whether it was written; never raises."""
    if not path:
        return False
    try:
        flags = os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(path, flags)  # no O_CREAT: the kubelet makes the file, nothing else should
    except Exception:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        data = line.encode()[:MAX_BYTES]
        while data:
            data = data[os.write(fd, data) :]
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
