"""A running server takes a renewed KBase token (BERDLSpawner.use_kbase_token, which the hub's
token_refresh endpoint calls): its credentials Secret holds the new token and keeps its other keys, and
the stop deletes the Spark cluster with it. Real BERDLSpawners against the kmock Kubernetes emulator and
the Spark and governance stand-ins."""

from __future__ import annotations

import base64
from typing import Any

import kmock
import pytest
from berdl_hub import credentials

from localhub.standins.kbase_auth2 import new_token
from localhub.standins.kube import NAMESPACE
from tests.hub.hubtest_stack import SECRETS, TOKEN, Stack
from tests.hub.hubtest_support import assert_no_secret_in

pytestmark = pytest.mark.asyncio
NEW = new_token()


def secret_data(stack: Stack, pod_name: str) -> dict[str, str]:
    raw: dict[str, Any] = stack.k8s.objects[
        kmock.resource("v1/secrets"), NAMESPACE, credentials.secret_name(pod_name)
    ].raw
    return {key: base64.b64decode(value).decode() for key, value in raw["data"].items()}


async def test_the_secret_takes_the_new_token_and_keeps_the_rest(
    stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    alice = stack.spawner()
    # bob's server, without a Spark cluster (the stand-in files clusters by token, and bob has alice's)
    bob = stack.spawner("bob", spark_cluster_manager_url="")
    await alice.start()
    await bob.start()
    before = secret_data(stack, alice.pod_name)
    bobs = secret_data(stack, bob.pod_name)

    await alice.use_kbase_token(NEW)

    after = secret_data(stack, alice.pod_name)
    assert after == {**before, "KBASE_AUTH_TOKEN": NEW}
    assert secret_data(stack, bob.pod_name) == bobs  # another user's server is not touched
    # The stop deletes the user's cluster with the token the server holds now.
    stack.spark.alias(NEW, TOKEN)
    await alice.stop()
    await alice.run_post_stop_hook()
    assert stack.spark.clusters == {}
    assert stack.secrets() == [credentials.secret_name(bob.pod_name)]
    await bob.stop()
    await bob.run_post_stop_hook()
    assert_no_secret_in(all_logs.text, [*SECRETS, NEW])


async def test_a_server_whose_secret_is_gone_keeps_the_token_in_memory(
    stack: Stack, all_logs: pytest.LogCaptureFixture
) -> None:
    spawner = stack.spawner()
    await spawner.start()
    name = credentials.secret_name(spawner.pod_name)
    core = stack.k8s.objects
    del core[kmock.resource("v1/secrets"), NAMESPACE, name]
    await spawner.use_kbase_token(NEW)
    assert await spawner._user_token() == NEW
    assert "has no credentials Secret to update yet" in all_logs.text
    assert_no_secret_in(all_logs.text, [*SECRETS, NEW])
    await spawner.stop()
