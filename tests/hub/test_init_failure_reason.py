"""The reason a user reads when berdl-init fails: the line berdl-init printed, which the kubelet puts in
the initContainer's status as its termination message (policy FallbackToLogsOnError: the log's tail)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from berdl_hub import manifest
from berdl_hub.spawner import SpawnRefused

from tests.hub.hubtest_stack import Stack

INVALID = "invalid settings: BERDL_VENV_RESTORE_TIMEOUT='soon': Input should be a valid number"


def failed_pod(code: int, message: str | None) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": code, "reason": "Error"}
    if message is not None:
        terminated["message"] = message
    status = {
        "name": manifest.INIT_CONTAINER_NAME,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": terminated},
    }
    return {"status": {"initContainerStatuses": [status]}}


def test_the_reason_is_the_line_the_real_berdl_init_printed(tmp_path: Path) -> None:
    # Both streams in one, in the order written, as the kubelet's log tail holds them.
    run = subprocess.run(
        [sys.executable, "-m", "berdl_init", "--json"],
        env={**os.environ, "BERDL_HOME": str(tmp_path), "BERDL_VENV_RESTORE_TIMEOUT": "soon"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stdout
    assert run.stdout.startswith("{")  # the --json report comes first, berdl-init's line last
    message = manifest.init_failure(failed_pod(2, run.stdout))
    assert message == (
        f"Your home could not be prepared: {INVALID}, unable to parse string as a number "
        f"(berdl-init exited with status 2: {manifest.INIT_EXIT_MEANINGS[2]})."
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        # Not berdl-init's own line (a crash before it ran): the last line of the log.
        ("Traceback (most recent call last):\n  ...\nOSError: [Errno 30] Read-only file system\n\n",
         ": OSError: [Errno 30] Read-only file system"),
        (None, ""),  # no termination message: the exit status alone
        ("\n \n", ""),
    ],
)  # fmt: skip
def test_without_berdl_inits_line(message: str | None, reason: str) -> None:
    assert manifest.init_failure(failed_pod(3, message)) == (
        f"Your home could not be prepared{reason} (berdl-init exited with status 3: "
        f"{manifest.INIT_EXIT_MEANINGS[3]})."
    )


def test_a_long_reason_is_cut_to_one_readable_line() -> None:
    reason = manifest.printed_reason("berdl-init: " + "x" * 5000)
    assert len(reason) == 500
    assert reason.endswith("x...")


@pytest.mark.asyncio
async def test_a_spawn_ends_with_the_reason_from_the_pod_status(stack: Stack) -> None:
    stack.kubelet.init_exit_code = 2
    stack.kubelet.init_message = '{"ok": false}\nberdl-init: ' + INVALID + "\n"
    spawner = stack.spawner(start_timeout=60)
    with pytest.raises(SpawnRefused) as raised:
        await spawner.start()
    assert f"Your home could not be prepared: {INVALID} (berdl-init exited with status 2" in (
        raised.value.jupyterhub_message
    )
    await spawner.stop()
