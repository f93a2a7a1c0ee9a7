"""BERDL's metrics (berdl_hub.metrics) as a real BERDLSpawner's starts and stops record them, against the
kmock API with its kubelet stand-in and the Spark and governance stand-ins; Auth2's checks against its
stand-in. Each test reads what changed in prometheus_client's default registry, the one JupyterHub
serves on /hub/metrics (tests/hub/test_hub_metrics.py reads it there)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import kmock
import pytest
from berdl_hub import hub_config, hub_secrets, metrics
from berdl_hub.kbase_auth2 import Auth2Client, Auth2Unavailable, InvalidToken
from berdl_hub.server_objects import ObjectError
from berdl_hub.services import close_shared_client
from berdl_hub.spawner import SpawnRefused
from prometheus_client import REGISTRY
from traitlets.config import Config

from localhub.standins.kbase_auth2 import kbase_env
from localhub.standins.kube import NAMESPACE
from tests.hub.hubtest_kbase import ALICE_KBASE_TOKEN
from tests.hub.hubtest_stack import Stack
from tests.hub.hubtest_support import closed_port_url
from tests.hub.test_hub import GOOD
from tests.hub.test_lifecycle import break_spark

SUMMARY = {
    "berdl_init": "0.1.0",
    "result": "changed",
    "exit_status": 0,
    "changes": 7,
    "warnings": 0,
    "failed_steps": [],
    "seconds": 2.5,
}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Changes:
    """What the samples of the registry became since `counting()` began."""

    def __init__(self) -> None:
        self.before = self._samples()

    @staticmethod
    def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in REGISTRY.collect()
            if family.name.startswith("berdl_")
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self._samples().get(key, 0.0) - self.before.get(key, 0.0)

    def label_values(self) -> set[str]:
        return {value for _, labels in self._samples() for _, value in labels}


@contextmanager
def counting() -> Iterator[Changes]:
    yield Changes()


def init_summary(**changes: object) -> str:
    return json.dumps({**SUMMARY, **changes})


@pytest.mark.asyncio
async def test_a_start_and_a_stop_record_each_step(stack: Stack) -> None:
    stack.kubelet.init_summary = init_summary()
    spawner = stack.spawner()
    with counting() as changed:
        await spawner.start()
        await spawner.stop()

    assert changed("berdl_spark_cluster_starts_total", profile="default", outcome="created") == 1
    create = changed(
        "berdl_spark_cluster_create_duration_seconds_count", profile="default", outcome="created"
    )
    assert create == 1
    assert (
        changed("berdl_spark_cluster_create_duration_seconds_sum", profile="default", outcome="created") > 0
    )
    assert changed("berdl_spark_cluster_delete_duration_seconds_count", outcome="deleted") == 1
    assert (
        changed("berdl_minio_credentials_fetch_duration_seconds_count", profile="default", outcome="ok") == 1
    )
    assert changed("berdl_init_runs_total", profile="default", result="changed", exit_status="0") == 1
    init = "berdl_init_duration_seconds"
    assert changed(f"{init}_count", profile="default", result="changed") == 1
    assert changed(f"{init}_sum", profile="default", result="changed") == 2.5  # berdl-init's own measure
    objects = "berdl_server_object_duration_seconds_count"
    assert changed(objects, kind="Secret", operation="create", outcome="ok") == 1
    assert changed(objects, kind="Secret", operation="delete", outcome="ok") == 1
    for part in ("hub", "spark", "init", "server"):
        assert changed("berdl_spawn_part_duration_seconds_count", profile="default", part=part) == 1, part
    # No label holds the user's or the server's name.
    assert not {value for value in changed.label_values() if "alice" in value}


@pytest.mark.asyncio
async def test_without_a_summary_the_kubelets_times_give_the_duration(stack: Stack) -> None:
    """An init image older than the summary: the result is unknown, the kubelet's times (1 s here)."""
    spawner = stack.spawner()
    with counting() as changed:
        await spawner.start()
        await spawner.stop()

    assert changed("berdl_init_runs_total", profile="default", result="unknown", exit_status="0") == 1
    assert changed("berdl_init_duration_seconds_sum", profile="default", result="unknown") == 1.0


@pytest.mark.asyncio
async def test_a_failed_berdl_init_is_counted_with_its_status_and_its_own_line_shown(stack: Stack) -> None:
    stack.kubelet.init_exit_code = 2
    stack.kubelet.init_message = init_summary(
        result="failed", exit_status=2, changes=0, error="invalid settings: BERDL_UID='x': not a number"
    )
    spawner = stack.spawner(start_timeout=60)
    with counting() as changed, pytest.raises(SpawnRefused) as raised:
        await spawner.start()
    await spawner.stop()

    assert changed("berdl_init_runs_total", profile="default", result="failed", exit_status="2") == 1
    assert changed("berdl_spawn_part_duration_seconds_count", profile="default", part="hub") == 0
    assert "prepared: invalid settings: BERDL_UID='x': not a number (berdl-init exited with status 2" in (
        raised.value.jupyterhub_message
    )


@pytest.mark.parametrize(
    ("failure", "outcome"), [("401", "refused"), ("500", "failed"), ("timeout", "timed_out")]
)
@pytest.mark.asyncio
async def test_a_failed_spark_create_is_counted_by_its_kind(stack: Stack, failure: str, outcome: str) -> None:
    spawner = stack.spawner(spark_failure_policy="fail", **break_spark(stack, failure))
    with counting() as changed, pytest.raises(SpawnRefused):
        await spawner.start()
    await spawner.stop()

    assert changed("berdl_spark_cluster_starts_total", profile="default", outcome=outcome) == 1
    assert (
        changed("berdl_spark_cluster_create_duration_seconds_count", profile="default", outcome=outcome) == 1
    )
    assert changed("berdl_spark_cluster_starts_total", profile="default", outcome="created") == 0


@pytest.mark.asyncio
async def test_a_failed_spark_cluster_delete_is_counted(stack: Stack) -> None:
    spawner = stack.spawner(service_request_attempts=1)
    await spawner.start()
    spawner.spark_cluster_manager_url = closed_port_url()
    with counting() as changed:
        await spawner.stop()  # completes, the failure logged

    delete = "berdl_spark_cluster_delete_duration_seconds_count"
    assert changed(delete, outcome="failed") == 1
    assert changed(delete, outcome="deleted") == changed(delete, outcome="absent") == 0


#: Kubernetes refusing a server's object, which is not asked again. (Not a 500: kmock carries out a write
#: it answers with an error, so the retry of a create meets its own object, and that of a delete finds none.)
FORBIDDEN = kmock.KubernetesError(status=403, reason="Forbidden", message="secrets is forbidden")


def assert_the_secrets_failed(changed: Changes, operation: str) -> None:
    """The Secret's `operation` counted once as failed, never as done."""
    objects = "berdl_server_object_duration_seconds_count"
    assert changed(objects, kind="Secret", operation=operation, outcome="failed") == 1
    assert changed(objects, kind="Secret", operation=operation, outcome="ok") == 0


@pytest.mark.asyncio
async def test_a_failed_create_of_a_servers_object_is_counted(stack: Stack) -> None:
    stack.k8s[f"post /api/v1/namespaces/{NAMESPACE}/secrets"] << FORBIDDEN
    spawner = stack.spawner()
    with counting() as changed, pytest.raises(ObjectError, match=r"creating Secret .* answered 403"):
        await spawner.start()

    assert_the_secrets_failed(changed, "create")


@pytest.mark.asyncio
async def test_a_failed_delete_of_a_servers_object_is_counted(stack: Stack) -> None:
    spawner = stack.spawner()
    await spawner.start()
    stack.k8s[f"delete /api/v1/namespaces/{NAMESPACE}/secrets/jupyter-alice-credentials"] << FORBIDDEN
    with counting() as changed:
        await spawner.stop()  # completes, the failure logged

    assert_the_secrets_failed(changed, "delete")


@pytest.mark.asyncio
async def test_a_second_server_shares_the_cluster(stack: Stack) -> None:
    first = stack.spawner()
    second = stack.spawner(user=first.user, server="big")
    with counting() as changed:
        await first.start()
        await second.start()
        await second.stop()
        await first.stop()

    assert changed("berdl_spark_cluster_starts_total", profile="default", outcome="created") == 1
    assert changed("berdl_spark_cluster_starts_total", profile="default", outcome="shared") == 1
    assert changed("berdl_spark_cluster_delete_duration_seconds_count", outcome="deleted") == 1


@pytest.mark.asyncio
async def test_minio_failures_are_counted(stack: Stack) -> None:
    stack.governance.mode = "500"
    spawner = stack.spawner(service_request_attempts=1)
    with counting() as changed, pytest.raises(SpawnRefused):
        await spawner.start()
    unreachable = stack.spawner(governance_api_url=closed_port_url())
    with pytest.raises(SpawnRefused):
        await unreachable.start()

    assert (
        changed("berdl_minio_credentials_fetch_duration_seconds_count", profile="default", outcome="failed")
        == 2
    )


@pytest.mark.asyncio
async def test_the_profile_label_is_a_slug_of_the_profile_list_never_the_users_text(stack: Stack) -> None:
    profiles = [
        {"display_name": "Small", "slug": "small", "default": True},
        {"display_name": "Large", "slug": "large", "kubespawner_override": {"mem_limit": "32G"}},
    ]
    with counting() as changed:
        chosen = stack.spawner(profile_list=profiles)
        chosen.user_options = {"profile": "large"}
        await chosen.start()
        await chosen.stop()
        # KubeSpawner refuses a profile that is not in the list before anything is counted.
        made_up = stack.spawner(name="bob", profile_list=profiles)
        made_up.user_options = {"profile": "bob-made-this-up"}
        with pytest.raises(ValueError, match="No such profile"):
            await made_up.start()

    assert changed("berdl_spark_cluster_starts_total", profile="large", outcome="created") == 1
    assert "bob-made-this-up" not in changed.label_values()
    # Without a profile list, whatever the options say, the label is `default`.
    assert metrics.profile_label(False, "bob-made-this-up") == "default"


@pytest.mark.asyncio
async def test_auth2_checks_are_counted_by_outcome(auth2_url: str) -> None:
    root = kbase_env(auth2_url)["KBASE_AUTH_URL"]
    with counting() as changed:
        await Auth2Client(root, timeout=5).check(ALICE_KBASE_TOKEN)
        with pytest.raises(InvalidToken):
            await Auth2Client(root, timeout=5).check("A" * 32)
        with pytest.raises(Auth2Unavailable):
            await Auth2Client(closed_port_url(), timeout=5).check(ALICE_KBASE_TOKEN)
    await close_shared_client()

    for outcome in metrics.AUTH2_OUTCOMES:
        assert changed("berdl_auth2_check_duration_seconds_count", outcome=outcome) == 1, outcome


def test_the_series_alerts_compare_against_exist_before_anything_happened() -> None:
    """A first failure must be an increase from 0, which Prometheus sees; a series born at 1 is not."""
    names: Mapping[str, dict[str, str]] = {
        "berdl_spark_cluster_starts_total": {"profile": "default", "outcome": "timed_out"},
        "berdl_init_runs_total": {"profile": "default", "result": "failed", "exit_status": "0"},
        "berdl_proxy_route_restores_total": {"outcome": "ok"},
        "berdl_server_stops_total": {"by": "culler"},
        "berdl_auth2_check_duration_seconds_count": {"outcome": "unavailable"},
    }
    for name, labels in names.items():
        assert REGISTRY.get_sample_value(name, labels) is not None, name


def test_a_stop_by_an_unknown_stopper_is_refused() -> None:
    with pytest.raises(ValueError, match="one of culler, user, admin, service, revocation"):
        metrics.server_stopped("alice")


def test_prometheus_token_is_a_service_that_may_only_read_the_metrics() -> None:
    token = "m" * 40
    settings = hub_config.load({**GOOD, "BERDL_HUB_METRICS_TOKEN": token})
    c = Config()
    hub_config.apply(c, settings, {})

    assert {"name": "berdl-prometheus", "api_token": token} in c.JupyterHub.services
    roles = [role for role in c.JupyterHub.load_roles if role["name"] == "berdl-prometheus"]
    assert roles == [
        {"name": "berdl-prometheus", "scopes": ["read:metrics"], "services": ["berdl-prometheus"]}
    ]
    assert token not in repr(settings)
    # Without the token, no such service.
    c = Config()
    hub_config.apply(c, hub_config.load(GOOD), {})
    assert "berdl-prometheus" not in {service["name"] for service in c.JupyterHub.services}


def test_a_short_metrics_token_is_one_problem_naming_it_not_its_value() -> None:
    with pytest.raises(hub_config.HubConfigError) as raised:
        hub_config.load({**GOOD, "BERDL_HUB_METRICS_TOKEN": "short-token"})
    assert raised.value.problems == ["BERDL_HUB_METRICS_TOKEN must be at least 32 characters without spaces"]
    assert "short-token" not in str(raised.value)


def test_the_hub_counts_requests_in_its_log_function_unless_the_operator_set_one() -> None:
    c = Config()
    hub_config.apply(c, hub_config.load(GOOD), {})
    assert c.JupyterHub.tornado_settings["log_function"].__qualname__ == "log_function.<locals>.log_request"

    def operators(handler: object) -> None:
        pass

    tree = Config({"JupyterHub": {"tornado_settings": {"log_function": operators, "slow_spawn_timeout": 20}}})
    c = Config()
    hub_config.apply(c, replace(hub_config.load(GOOD), config_tree=tree), {})
    assert c.JupyterHub.tornado_settings == {"log_function": operators, "slow_spawn_timeout": 20}


def test_the_metrics_token_comes_from_its_file_and_never_reaches_a_pod_or_a_child(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "BERDL_HUB_METRICS_TOKEN").write_text("f" * 40 + "\n")
    settings = hub_config.load({**GOOD, hub_secrets.SECRETS_DIR_VARIABLE: str(folder)})
    assert settings.metrics_token == "f" * 40
    assert "BERDL_HUB_METRICS_TOKEN" in hub_secrets.HUB_ONLY_VARIABLES  # never forwarded to a user's pod
    environ = {"BERDL_HUB_METRICS_TOKEN": "e" * 40, "PATH": "/bin"}
    hub_config.forget_secrets(environ)
    assert environ == {"PATH": "/bin"}
