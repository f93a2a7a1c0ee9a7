"""berdl_hub.server_state: what a server keeps in the spawner's state, read and written without a spawner.
A state saved by an earlier release loads unchanged (its keys are the ones the hub has always saved); a
whole spawner loading one is test_lifecycle.py's `test_a_state_saved_by_the_previous_version_is_honoured`.
Last, what a spawner (no emulator) keeps of it through JupyterHub's clear_state() after a stop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from berdl_hub.server_state import SPARK_KEY, ServerState
from berdl_hub.spark_connect import ServiceName

# The forms the spawner's state has taken: the cluster share under "berdl_spark" (since the cluster was
# shared), the Service's name under ServiceName.STATE_KEY (since the Spark Connect Service).
SAVED: dict[str, dict[str, Any]] = {
    "holds a cluster": {
        SPARK_KEY: {"holds": True, "master_url": "spark://m:7077", "config": {"worker_count": 2}},
        ServiceName.STATE_KEY: "jupyter-alice",
    },
    "shares a cluster of another size": {
        SPARK_KEY: {
            "holds": True,
            "master_url": "spark://m:7077",
            "config": {"worker_count": 2},
            "cluster_config": {"worker_count": 8},
        },
    },
    "owes a delete": {SPARK_KEY: {"delete_pending": True}},
    "a Service's name only": {ServiceName.STATE_KEY: "jupyter-alice--0123456789"},
}


def test_a_new_server_saves_nothing() -> None:
    assert ServerState.new("berdl", "jupyter-alice").to_state() == {}


@pytest.mark.parametrize("form", sorted(SAVED))
def test_every_saved_form_loads_and_is_saved_again_unchanged(form: str) -> None:
    kubespawner_keys = {"pod_name": "jupyter-alice", "namespace": "berdl"}
    loaded = ServerState.from_state({**kubespawner_keys, **SAVED[form]}, "berdl", "jupyter-alice")
    assert loaded.to_state() == SAVED[form]


def test_what_a_loaded_state_holds_is_what_the_server_acts_on() -> None:
    loaded = ServerState.from_state(SAVED["shares a cluster of another size"], "berdl", "jupyter-alice")
    assert loaded.share.holds
    assert loaded.share.master_url == "spark://m:7077"
    assert loaded.share.cluster_config == {"worker_count": 8}  # the size the notebook is told
    owes = ServerState.from_state(SAVED["owes a delete"], "berdl", "jupyter-alice")
    assert owes.share.delete_pending
    assert not owes.share.holds
    named = ServerState.from_state(SAVED["holds a cluster"], "berdl", "jupyter-alice")
    assert (named.service.namespace, named.service.pod_name, named.service.name) == (
        "berdl",
        "jupyter-alice",
        "jupyter-alice",
    )


def test_only_the_servers_own_keys_are_saved_again_never_what_else_a_state_holds() -> None:
    # KubeSpawner's keys, and a token some other code might have put there, stay out of what this saves.
    state = {**SAVED["holds a cluster"], "pod_name": "jupyter-alice", "kbase_token": "a-token"}
    assert ServerState.from_state(state, "berdl", "jupyter-alice").to_state() == SAVED["holds a cluster"]


@pytest.mark.asyncio
async def test_a_duty_to_delete_outlives_the_clear_state_after_a_stop(
    make_spawner: Callable[..., Any],
) -> None:
    """JupyterHub's User.stop() runs clear_state() after the stop and its post-stop hook, then saves
    get_state(): a cluster delete that failed there is still owed in what the hub's database keeps, and
    the Service's name is free for the next start to choose."""
    spawner = make_spawner()
    spawner.load_state({SPARK_KEY: {"delete_pending": True}, ServiceName.STATE_KEY: "jupyter-alice"})
    spawner.clear_state()
    saved = spawner.get_state()
    assert saved[SPARK_KEY] == {"delete_pending": True}
    assert ServiceName.STATE_KEY not in saved
