"""What the hub makes with deploy/'s shipped settings, taken from the Kubernetes emulator after real starts,
is admitted by deploy/admission's ValidatingAdmissionPolicy: every pod, Secret, Service and NetworkPolicy
of alice's default server (Medium) and her server "big" (Large), and of john_doe's, with the Spark pods in
the hub's namespace and in one of their own. tests/deploy/test_admission.py tests the policy's rules on
objects built directly and on what a compromised hub could send instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kmock
import pytest
from berdl_hub.spawner import BERDLSpawner

from tests.deploy.admission import Request, decide
from tests.deploy.test_admission import HUB, policy, rendered  # noqa: F401 (the policy's fixtures)
from tests.hub.hubtest_stack import Stack
from tests.hub.test_notebook_environment import hub_configured  # noqa: F401 (deploy/'s settings)

pytestmark = pytest.mark.asyncio

#: The kinds the hub makes (deploy/role.yaml), as the emulator and the admission request name them.
MADE = {
    "v1/pods": ("", "pods"),
    "v1/secrets": ("", "secrets"),
    "v1/services": ("", "services"),
    "networking.k8s.io/v1/networkpolicies": ("networking.k8s.io", "networkpolicies"),
}


def made_by_the_hub(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    """(API group, resource, object) of every object of those kinds the emulator holds."""
    found = []
    for resource, (group, plural) in MADE.items():
        kind = kmock.resource(resource)
        found += [
            (group, plural, o.raw) for k, o in stack.k8s.objects.items() if k[0] == kind and not o.deleted
        ]
    return found


@pytest.mark.parametrize("spark_namespace", ["", "berdl-spark"], ids=["same namespace", "Spark's own"])
async def test_what_the_hub_makes_with_the_shipped_settings_is_admitted(
    stack: Stack,
    hub_configured: Callable[..., BERDLSpawner],  # noqa: F811
    policy: dict[str, Any],  # noqa: F811
    spark_namespace: str,
) -> None:
    alice = hub_configured("alice", spark_namespace=spark_namespace)
    big = hub_configured("alice", server="big", owner=alice.user, spark_namespace=spark_namespace)
    big.user_options = {"profile": "large"}
    john_doe = hub_configured("john_doe", spark_namespace=spark_namespace)
    for spawner in (alice, big, john_doe):
        await spawner.start()
    objects = made_by_the_hub(stack)
    assert sorted({plural for _, plural, _ in objects}) == ["networkpolicies", "pods", "secrets", "services"]
    assert len(objects) == 3 * 5  # per server: its pod, Secret, Service and two NetworkPolicies
    for group, plural, obj in objects:
        namespace = obj["metadata"]["namespace"]
        for operation in ("CREATE", "DELETE"):
            deleting = operation == "DELETE"
            request = Request(
                operation=operation,
                resource=plural,
                namespace=namespace,
                username=HUB,
                object=None if deleting else obj,
                old_object=obj if deleting else None,
                group=group,
            )
            decision = decide(policy, request)
            where = (operation, plural, namespace, obj["metadata"]["name"])
            assert decision.matched, where
            assert decision.allowed, (where, decision.refusals)
    for spawner in (alice, big, john_doe):
        await spawner.stop()
