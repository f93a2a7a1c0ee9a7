"""deploy/admission: the ValidatingAdmissionPolicy on what the hub's ServiceAccount does, its CEL rules
evaluated (tests/deploy/admission.py) on everything BERDLSpawner makes for the shipped settings, which
passes, and on what a compromised hub could send instead, which is refused."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from berdl_hub import server_objects
from berdl_hub.credentials import CredentialsSecret
from berdl_hub.server_objects import ServerPod
from berdl_hub.spark_connect import LABEL, SparkConnectService
from berdl_hub.spark_network import ClusterSide, NotebookSide

from tests.deploy.admission import Decision, Request, decide
from tests.deploy.rendered import DEPLOY, named, render
from tests.images.manifests import spawner_pod
from tests.images.test_deploy import kubernetes_validate

HUB = "system:serviceaccount:berdl:hub"
SHARED = [{"name": "shared", "mount_path": "/shared", "host_path": "/mnt/berdl/shared/data"}]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """deploy/ with the admission component, as an operator's overlay adds it."""
    folder = tmp_path_factory.mktemp("admission")
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY, folder)],
                "components": [os.path.relpath(DEPLOY / "admission", folder)],
            }
        )
    )
    return render(folder)


@pytest.fixture(scope="module")
def policy(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    return named(rendered, "ValidatingAdmissionPolicy", "berdl-hub")


def hub(operation: str, resource: str, obj: dict[str, Any], username: str = HUB, group: str = "") -> Request:
    deleting = operation == "DELETE"
    return Request(
        operation=operation,
        resource=resource,
        namespace="berdl",
        username=username,
        object=None if deleting else obj,
        old_object=obj if deleting else None,
        group=group,
    )


def spark_policies(pod: dict[str, Any], spark_namespace: str = "") -> list[dict[str, Any]]:
    """The NetworkPolicies the spawner makes for the server of `pod` (spark_network)."""
    server = ServerPod(pod["metadata"]["name"], "berdl", "uid-1", pod["metadata"]["labels"])
    user = pod["metadata"]["annotations"]["hub.jupyter.org/username"]
    made = []
    for kind in (NotebookSide, ClusterSide):
        owned = kind(user=user, spark_namespace=spark_namespace)
        body = owned.body(server)
        assert body is not None
        made.append(server_objects.placed(owned, body, server))
    return made


def credentials_secret(pod: dict[str, Any]) -> dict[str, Any]:
    owned = CredentialsSecret(lambda: {"JUPYTERHUB_API_TOKEN": "t", "KBASE_AUTH_TOKEN": "k"})
    server = ServerPod(pod["metadata"]["name"], "berdl", "uid-1", pod["metadata"]["labels"])
    body = owned.body(server)
    assert body is not None
    return server_objects.placed(owned, body, server)


def spark_connect_service(pod: dict[str, Any]) -> dict[str, Any]:
    """The Spark Connect Service the spawner makes for the server of `pod` (spark_connect)."""
    labels = pod["metadata"]["labels"]
    owned = SparkConnectService(lambda: labels[LABEL], 8888)
    server = ServerPod(pod["metadata"]["name"], "berdl", "uid-1", labels)
    body = owned.body(server)
    assert body is not None
    return server_objects.placed(owned, body, server)


# --- the policy itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kubernetes", ["1.30.0", "1.37.0"])
def test_the_policy_and_its_binding_validate_on_kubernetes_1_30_and_later(
    kubernetes: str, rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(named(rendered, kind, "berdl-hub")))
        result = subprocess.run(
            [kubernetes_validate(), "--strict", "-k", kubernetes, str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_component_is_not_in_deploy_itself_and_names_deploys_service_account(
    policy: dict[str, Any],
) -> None:
    """Clusters before 1.30 do not know the kind: deploy/ alone stays appliable there."""
    assert not [o for o in render() if o["kind"].startswith("ValidatingAdmission")]
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    account = yaml.safe_load((DEPLOY / "serviceaccount.yaml").read_text())["metadata"]["name"]
    (condition,) = policy["spec"]["matchConditions"]
    assert f"'system:serviceaccount:{kustomization['namespace']}:{account}'" in condition["expression"]


# --- what the spawner makes passes ----------------------------------------------------------------------


SPAWNER_PODS: dict[str, Callable[[], dict[str, Any]]] = {
    "alice": lambda: spawner_pod("alice"),
    "a named server": lambda: spawner_pod("alice", orm_spawner=SimpleNamespace(name="big", server=None)),
    "john_doe": lambda: spawner_pod("john_doe"),
    "with a shared folder": lambda: spawner_pod("alice", shared_mounts=SHARED),
    "berdl-init as the user (a PVC home)": lambda: spawner_pod(
        "alice", home_volume_type="pvc", home_claim_name="homes", home_sub_path="{username}"
    ),
}


@pytest.mark.parametrize("make", SPAWNER_PODS.values(), ids=SPAWNER_PODS.keys())
def test_every_object_the_spawner_makes_is_admitted(make: Callable[[], dict[str, Any]], policy: Any) -> None:
    pod = make()
    secret = credentials_secret(pod)
    requests = [
        hub("CREATE", "pods", pod),
        hub("DELETE", "pods", pod),
        hub("CREATE", "secrets", secret),
        hub("DELETE", "secrets", secret),
        hub("CREATE", "services", spark_connect_service(pod)),
        hub("DELETE", "services", spark_connect_service(pod)),
    ]
    for policy_object in spark_policies(pod) + spark_policies(pod, "berdl-spark"):
        requests += [
            hub(op, "networkpolicies", policy_object, group="networking.k8s.io")
            for op in ("CREATE", "DELETE")
        ]
    for request in requests:
        decision = decide(policy, request)
        assert decision.matched, request.operation
        assert decision.allowed, (request.operation, request.resource, decision.refusals)


def test_others_than_the_hub_are_not_restricted(policy: Any) -> None:
    privileged = spawner_pod("alice")
    privileged["spec"]["containers"][0]["securityContext"]["privileged"] = True
    for username in ("kubernetes-admin", "system:serviceaccount:other:hub"):
        assert not decide(policy, hub("CREATE", "pods", privileged, username=username)).matched


# --- what a compromised hub could send is refused ---------------------------------------------------------


def pod_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    pod = copy.deepcopy(_alice())
    change(pod)
    return pod


_ALICE: dict[str, Any] = {}


def _alice() -> dict[str, Any]:
    if not _ALICE:
        _ALICE.update(spawner_pod("alice"))
    return _ALICE


def notebook(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


def init(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["initContainers"] if c["name"] == "berdl-init")


def host_path(path: str) -> Callable[[dict[str, Any]], None]:
    return lambda pod: pod["spec"]["volumes"].append({"name": "x", "hostPath": {"path": path}})


REFUSED_PODS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "host network": (lambda p: p["spec"].update(hostNetwork=True), "network, PID or IPC"),
    "host PID": (lambda p: p["spec"].update(hostPID=True), "network, PID or IPC"),
    "the node's root": (host_path("/"), "hostPath"),
    "the node's docker socket": (host_path("/var/run/docker.sock"), "hostPath"),
    "every user's home": (host_path("/mnt/berdl/homes"), "hostPath"),
    "a way out of the homes": (host_path("/mnt/berdl/homes/../../etc"), "hostPath"),
    "a folder beside the shared one": (host_path("/mnt/berdl/shared-not"), "hostPath"),
    "a privileged notebook": (
        lambda p: notebook(p)["securityContext"].update(privileged=True),
        "privileged",
    ),
    "a notebook as root": (
        lambda p: notebook(p)["securityContext"].update(runAsUser=0, runAsNonRoot=False),
        "only the initContainer berdl-init may run as root",
    ),
    "a notebook of the image's user": (
        lambda p: [notebook(p)["securityContext"].pop(k) for k in ("runAsUser", "runAsNonRoot")],
        "only the initContainer berdl-init may run as root",
    ),
    "an initContainer of another name as root": (
        lambda p: p["spec"]["initContainers"].append(
            {"name": "sneaky", "image": "x", "securityContext": {"runAsUser": 0}}
        ),
        "only the initContainer berdl-init may run as root",
    ),
    "berdl-init with SYS_ADMIN": (
        lambda p: init(p)["securityContext"]["capabilities"]["add"].append("SYS_ADMIN"),
        "berdl-init must drop all capabilities",
    ),
    "berdl-init keeping every capability": (
        lambda p: init(p)["securityContext"]["capabilities"].pop("drop"),
        "berdl-init must drop all capabilities",
    ),
    "berdl-init with privilege escalation": (
        lambda p: init(p)["securityContext"].update(allowPrivilegeEscalation=True),
        "berdl-init must drop all capabilities",
    ),
    "a notebook adding NET_RAW": (
        lambda p: notebook(p)["securityContext"]["capabilities"].update(add=["NET_RAW"]),
        "only berdl-init may add capabilities",
    ),
    "a pod that is not a user pod": (
        lambda p: p["metadata"]["labels"].update(component="hub"),
        "only user pods",
    ),
}


@pytest.mark.parametrize(("change", "message"), REFUSED_PODS.values(), ids=REFUSED_PODS.keys())
def test_a_pod_beyond_what_the_spawner_makes_is_refused(
    change: Callable[[dict[str, Any]], None], message: str, policy: Any
) -> None:
    decision = decide(policy, hub("CREATE", "pods", pod_with(change)))
    assert decision.matched
    assert any(message in refusal for refusal in decision.refusals), decision.refusals


def test_the_hub_cannot_delete_a_pod_that_is_not_a_user_pod(
    policy: Any, rendered: list[dict[str, Any]]
) -> None:
    hub_pod = {"metadata": named(rendered, "Deployment", "hub")["spec"]["template"]["metadata"]}
    hub_pod["metadata"]["name"] = "hub-5d8f7c9b4-x2x7q"
    assert "only user pods" in decide(policy, hub("DELETE", "pods", hub_pod)).refusals[0]


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "DELETE"])
@pytest.mark.parametrize(
    "name", ["berdl-hub-secrets", "jupyter-alice", "credentials", "x-jupyter-a-credentials"]
)
def test_the_hub_may_touch_no_secret_but_a_servers_credentials(
    operation: str, name: str, policy: Any
) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {}}
    decision = decide(policy, hub(operation, "secrets", secret))
    assert decision.refusals == [
        "the hub may create, change and delete only servers' credentials Secrets (<pod>-credentials)"
    ]


# --- a rule holds when a field is absent ----------------------------------------------------------------


def bare_pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "jupyter-alice", "labels": {"component": "singleuser-server"}},
        "spec": {"containers": [{"name": "notebook", "image": "x"}], **spec},
    }


SPARSE_PODS: dict[str, tuple[dict[str, Any], bool]] = {
    # A pod the API server accepts with none of the optional fields: no volumes, no initContainers, no
    # securityContext anywhere. Its container runs as the image's user, who may be root: refused, by a
    # rule, not by an error.
    "nothing optional": (bare_pod(), False),
    "runAsNonRoot on the pod only": (bare_pod(securityContext={"runAsNonRoot": True}), True),
    "runAsUser on the pod only": (bare_pod(securityContext={"runAsUser": 1000}), True),
    "a securityContext without privileged or capabilities": (
        bare_pod(containers=[{"name": "notebook", "image": "x", "securityContext": {"runAsUser": 1000}}]),
        True,
    ),
    "capabilities without add": (
        bare_pod(
            containers=[
                {
                    "name": "notebook",
                    "image": "x",
                    "securityContext": {"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}},
                }
            ]
        ),
        True,
    ),
    "volumes without a hostPath": (
        bare_pod(securityContext={"runAsUser": 1000}, volumes=[{"name": "t", "emptyDir": {}}]),
        True,
    ),
    "a pod without labels": (
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        False,
    ),
}


@pytest.mark.parametrize(("pod", "admitted"), SPARSE_PODS.values(), ids=SPARSE_PODS.keys())
def test_an_absent_field_is_decided_by_a_rule_never_an_error(
    pod: dict[str, Any], admitted: bool, policy: Any
) -> None:
    decision: Decision = decide(policy, hub("CREATE", "pods", pod))
    assert not [r for r in decision.refusals if "could not be evaluated" in r], decision.refusals
    assert decision.allowed is admitted, decision.refusals


def test_an_error_in_a_rule_refuses_as_failure_policy_fail_does(policy: Any) -> None:
    """The evaluator's own promise, on which the test above leans: an expression that reads an absent
    field refuses the request instead of passing it."""
    broken = copy.deepcopy(policy)
    broken["spec"]["validations"].append({"expression": "object.spec.hostNetwork == false", "message": "m"})
    decision = decide(broken, hub("CREATE", "pods", bare_pod(securityContext={"runAsUser": 1000})))
    assert decision.refusals
    assert "could not be evaluated" in decision.refusals[0]


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "DELETE"])
def test_the_hub_may_touch_no_network_policy_but_a_servers_own(
    operation: str, policy: Any, rendered: list[dict[str, Any]]
) -> None:
    """The static policies keep users apart: the hub may neither change nor delete them."""
    static = [o for o in rendered if o["kind"] == "NetworkPolicy"]
    assert {o["metadata"]["name"] for o in static} >= {"singleuser", "spark", "hub"}
    for obj in static:
        decision = decide(policy, hub(operation, "networkpolicies", obj, group="networking.k8s.io"))
        assert decision.refusals == [
            "the hub may create and delete only servers' own NetworkPolicies (<pod>-spark-notebook, -cluster)"
        ], obj["metadata"]["name"]


def hostile_service(**change: Any) -> dict[str, Any]:
    service = spark_connect_service(spawner_pod("alice"))
    for key, value in change.items():
        if key == "name":
            service["metadata"]["name"] = value
        elif value is None:
            del service["spec"][key]
        else:
            service["spec"][key] = value
    return service


HOSTILE_SERVICES: dict[str, dict[str, Any]] = {
    # CVE-2020-8554: a Service's externalIPs take the cluster's traffic to those addresses.
    "external IPs": hostile_service(externalIPs=["10.0.0.1"]),
    "a node port": hostile_service(type="NodePort"),
    "a load balancer": hostile_service(type="LoadBalancer"),
    "an external name": hostile_service(type="ExternalName", externalName="evil.example"),
    "the hub's pods": hostile_service(selector={"app.kubernetes.io/component": "hub"}),
    "no selector (endpoints of its own)": hostile_service(selector=None),
    "another Service's pods": hostile_service(selector={LABEL: "jupyter-bob"}),
    "a name that is not a server's": hostile_service(name="proxy-public"),
}


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
@pytest.mark.parametrize("service", HOSTILE_SERVICES.values(), ids=HOSTILE_SERVICES.keys())
def test_the_hub_may_make_no_service_but_a_servers_spark_connect_one(
    operation: str, service: dict[str, Any], policy: Any
) -> None:
    decision = decide(policy, hub(operation, "services", service))
    assert len(decision.refusals) == 1, decision.refusals
    assert decision.refusals[0].startswith(
        "the hub may create and delete only servers' Spark Connect Services"
    )


def test_the_hub_cannot_delete_a_service_of_deploy(policy: Any, rendered: list[dict[str, Any]]) -> None:
    services = [o for o in rendered if o["kind"] == "Service"]
    assert {o["metadata"]["name"] for o in services} >= {"hub", "proxy-public", "proxy-api"}
    for obj in services:
        assert decide(policy, hub("DELETE", "services", obj)).refusals, obj["metadata"]["name"]
