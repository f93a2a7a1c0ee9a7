"""What the node stand-in reports as a kubelet would (localhub/node.py), offline: the times of a
container in the kubelet's form, and the termination message as much of it as a kubelet keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from localhub.node import MESSAGE_BYTES, kubelet_time, termination_message


@pytest.mark.parametrize(
    ("podman", "kubelet"),
    [
        ("2026-05-20T10:00:00.123456789Z", "2026-05-20T10:00:00Z"),
        ("2026-05-20T12:00:00.5+02:00", "2026-05-20T10:00:00Z"),
        ("2026-05-20 10:00:00.123456789 +0000 UTC", "2026-05-20T10:00:00Z"),  # podman events
        ("0001-01-01T00:00:00Z", ""),  # podman's zero time: not finished
        ("", ""),
    ],
)
def test_times_are_the_kubelets_utc_whole_seconds(podman: str, kubelet: str) -> None:
    assert kubelet_time(podman) == kubelet


def test_the_message_is_the_files_first_4_kib(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    assert termination_message(path) == ""  # none yet
    path.write_text("x" * 5000)
    assert termination_message(path) == "x" * MESSAGE_BYTES
