"""The NetworkPolicies of deploy/, as rendered, select the pods the manifests and BERDLSpawner really
create, allow every path BERDL needs, and refuse the rest: the cloud metadata address, the hub's
database, private ranges nobody listed, other users' servers. The paths between a user's notebook and
that user's Spark pods are opened by each server's own policies: test_spark_isolation.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from berdl_hub import server_objects
from berdl_hub.server_objects import ServerPod
from berdl_hub.spark_network import ClusterSide, NotebookSide

from tests.deploy.netpol import Peer, allowed, pod, selecting
from tests.deploy.rendered import DEPLOY, named, overlay, render
from tests.images.manifests import spawner_pod

UDP = "UDP"


@pytest.fixture(scope="module", params=["berdl", "research-hub"], ids=["deploy", "overlay"])
def namespace(request: pytest.FixtureRequest) -> str:
    """deploy/ itself, and an overlay that moves it to another namespace."""
    return request.param


@pytest.fixture(scope="module")
def objects(namespace: str, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render() if namespace == "berdl" else render(overlay(tmp_path_factory.mktemp("netpol"), namespace))


@pytest.fixture(scope="module")
def policies(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["name"] for p in found} == {
        "hub",
        "proxy-api",
        "singleuser",
        "singleuser-services",
        "spark",
    }
    return found


@pytest.fixture(scope="module")
def pods(objects: list[dict[str, Any]], namespace: str) -> dict[str, Peer]:
    """Every pod of a running deployment: the hub and the proxy as their Deployments make them, user
    pods as BERDLSpawner builds them, Spark pods with the labels the Spark Cluster Manager's templates
    (kbase/cdm-kube-spark-manager, src/templates) give them, and the pods around them."""

    def template(name: str) -> dict[str, Any]:
        return named(objects, "Deployment", name)["spec"]["template"]

    def spark(component: str, ip: str) -> Peer:
        labels = {
            "app": "spark",
            "component": component,
            "user": "alice",
            "cluster-id": "spark-alice-1a2b3c4d",
        }
        return Peer(f"spark-{component}", ip, labels, namespace)

    return {
        "hub": pod("hub", "10.1.0.2", template("hub"), namespace),
        "proxy": pod("proxy", "10.1.0.3", template("proxy"), namespace),
        "alice": pod("alice", "10.1.0.10", spawner_pod("alice"), namespace),
        "alice-named": pod(
            "alice-named",
            "10.1.0.11",
            spawner_pod("alice", orm_spawner=SimpleNamespace(name="big", server=None)),
            namespace,
        ),
        "bob": pod("bob", "10.1.0.12", spawner_pod("bob"), namespace),
        "spark-master": spark("master", "10.1.0.20"),
        "spark-worker": spark("worker", "10.1.0.21"),
        "kube-dns": Peer("kube-dns", "10.2.0.10", {"k8s-app": "kube-dns"}, "kube-system", {"dns": 53}),
        # The hub's PostgreSQL, run in the same namespace, and a stranger pod there.
        "hub-db": Peer("hub-db", "10.1.0.30", {"app": "postgres"}, namespace, {"postgres": 5432}),
        "other": Peer("other", "10.1.0.31", {"app": "something-else"}, namespace),
        # An operator's service opened to notebooks by label, and an unlabeled neighbour of it.
        "minio": Peer(
            "minio", "10.3.0.5", {"app": "minio", "berdl.kbase.us/notebook-access": "true"}, "minio"
        ),
        "minio-console": Peer("minio-console", "10.3.0.6", {"app": "minio-console"}, "minio"),
        # A BERDL service the operator named for Spark Connect (by its label), and one not named.
        "mcp": Peer("mcp", "10.4.0.5", {"app": "datalake-mcp", SPARK_CONNECT_ACCESS: "true"}, "datalake"),
        "mcp-unnamed": Peer("mcp-unnamed", "10.4.0.6", {"app": "datalake-mcp"}, "datalake"),
    }


SPARK_CONNECT_ACCESS = "berdl.kbase.us/spark-connect-access"  # the label the shipped rule admits
METADATA = Peer("cloud metadata", "169.254.169.254")
PYPI = Peer("a package index", "151.101.0.223")
KBASE = Peer("KBase", "128.3.56.133")
DB_OUTSIDE = Peer("the hub's database outside the cluster", "10.20.0.5")
KUBE_API = Peer("the Kubernetes API", "10.96.0.1")
PRIVATE = [Peer("unlisted", ip) for ip in ("10.0.0.1", "172.16.5.5", "192.168.1.1", "100.64.0.7")]


def test_each_policy_selects_exactly_the_pods_it_is_for(
    policies: list[dict[str, Any]], pods: dict[str, Peer]
) -> None:
    assert selecting(policies, pods["hub"]) == ["hub"]
    assert selecting(policies, pods["proxy"]) == ["proxy-api"]
    for user_pod in ("alice", "alice-named", "bob"):
        assert sorted(selecting(policies, pods[user_pod])) == ["singleuser", "singleuser-services"]
    for spark in ("spark-master", "spark-worker"):
        assert selecting(policies, pods[spark]) == ["spark"]
    for other in ("hub-db", "other"):
        assert selecting(policies, pods[other]) == []


def test_the_spawners_pod_has_the_ports_the_policies_name(pods: dict[str, Peer]) -> None:
    assert pods["alice"].ports == {"notebook-port": 8888}
    assert pods["hub"].ports == {"hub": 8081}
    assert pods["proxy"].ports == {"http": 8000, "api": 8001}


@pytest.mark.parametrize(
    ("source", "destination", "port", "protocol"),
    [
        ("proxy", "alice", 8888, "TCP"),  # users reach their servers through the proxy
        ("proxy", "alice-named", 8888, "TCP"),
        ("hub", "alice", 8888, "TCP"),  # the hub checks that a server is up
        ("alice", "hub", 8081, "TCP"),  # JUPYTERHUB_API_URL
        ("proxy", "hub", 8081, "TCP"),  # the proxy's default target
        ("hub", "proxy", 8001, "TCP"),  # routes
        ("alice", "kube-dns", 53, UDP),
        ("alice", "kube-dns", 53, "TCP"),
        ("proxy", "kube-dns", 53, UDP),
        ("alice", "minio", 9000, "TCP"),  # an operator's service, opened by label
        ("hub", "hub-db", 5432, "TCP"),
        ("hub", "minio", 9000, "TCP"),
    ],
)
def test_the_paths_berdl_needs_are_open(
    policies: list[dict[str, Any]],
    pods: dict[str, Peer],
    source: str,
    destination: str,
    port: int,
    protocol: str,
) -> None:
    assert allowed(policies, pods[source], pods[destination], port, protocol)


def test_users_reach_the_public_internet_and_everyone_reaches_the_proxy(
    policies: list[dict[str, Any]], pods: dict[str, Peer]
) -> None:
    for address in (PYPI, KBASE):
        assert allowed(policies, pods["alice"], address, 443)
    assert allowed(policies, PYPI, pods["proxy"], 8000)  # users arrive from anywhere
    for address in (PYPI, KBASE, DB_OUTSIDE, KUBE_API):
        assert allowed(policies, pods["hub"], address, 443)  # Kubernetes API, KBase, the database


@pytest.mark.parametrize("source", ["alice", "alice-named", "hub", "proxy"])
def test_nobody_reaches_the_cloud_metadata_address(
    policies: list[dict[str, Any]], pods: dict[str, Peer], source: str
) -> None:
    for port, protocol in ((80, "TCP"), (443, "TCP"), (53, UDP), (53, "TCP")):
        assert not allowed(policies, pods[source], METADATA, port, protocol)


@pytest.mark.parametrize(
    ("source", "destination", "port"),
    [
        ("alice", "hub-db", 5432),  # the hub's database
        ("alice", "bob", 8888),  # another user's server
        ("alice", "proxy", 8001),  # the proxy's API
        ("alice", "hub", 8888),  # the hub, on anything but its API port
        ("alice", "other", 8080),  # in-cluster services nobody opened
        ("alice", "minio-console", 9001),  # the unlabeled neighbour of an opened service
        ("alice", "kube-dns", 8080),  # the DNS pods, on anything but DNS
        ("other", "hub", 8081),  # the hub is for the proxy and the user pods
        ("spark-worker", "hub", 8081),
        ("other", "alice", 8888),
        ("other", "proxy", 8001),
        ("proxy", "hub-db", 5432),  # the proxy reaches only the hub, the servers and DNS
    ],
)
def test_other_paths_between_pods_are_closed(
    policies: list[dict[str, Any]], pods: dict[str, Peer], source: str, destination: str, port: int
) -> None:
    assert not allowed(policies, pods[source], pods[destination], port)


def test_user_pods_reach_no_private_address_nobody_listed(
    policies: list[dict[str, Any]], pods: dict[str, Peer]
) -> None:
    for address in (DB_OUTSIDE, KUBE_API, *PRIVATE):
        for port in (443, 5432, 6443):
            assert not allowed(policies, pods["alice"], address, port), address
    assert not allowed(policies, pods["proxy"], PYPI, 443)


# --- Spark Connect (15002) ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_servers_own(policies: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """deploy/'s policies plus those alice's servers bring (spark_network): the way between her
    notebooks and her Spark pods."""
    return policies + [
        server_objects.placed(owned, body, server)
        for server in (server_pod(spawner_pod("alice"), namespace),)
        for owned in (
            NotebookSide(user="alice", spark_namespace=""),
            ClusterSide(user="alice", spark_namespace=""),
        )
        if (body := owned.body(server)) is not None
    ]


def server_pod(manifest: dict[str, Any], namespace: str) -> ServerPod:
    return ServerPod(manifest["metadata"]["name"], namespace, "uid-1", manifest["metadata"]["labels"])


def test_spark_connect_is_reached_only_by_the_services_the_operator_named(
    with_servers_own: list[dict[str, Any]], pods: dict[str, Peer]
) -> None:
    for user_pod in ("alice", "alice-named", "bob"):
        admitted = sorted(
            name for name, peer in pods.items() if allowed(with_servers_own, peer, pods[user_pod], 15002)
        )
        assert admitted == ["mcp"], user_pod  # not her Spark pods, the hub, the proxy, other users
    assert not allowed(with_servers_own, pods["mcp"], pods["alice"], 8888)  # and nothing but Spark Connect
    for address in (PYPI, KBASE, DB_OUTSIDE):
        assert not allowed(with_servers_own, address, pods["alice"], 15002)


def test_her_spark_pods_still_reach_her_driver_on_every_other_port(
    with_servers_own: list[dict[str, Any]], pods: dict[str, Peer]
) -> None:
    for port in (1, 7078, 15001, 15003, 41234, 65535):
        assert allowed(with_servers_own, pods["spark-worker"], pods["alice"], port), port
        assert not allowed(with_servers_own, pods["spark-worker"], pods["bob"], port), port


def readme_selector_patch() -> str:
    """The patch deploy/README.md gives under "Who may connect", as an operator would copy it."""
    readme = (DEPLOY / "README.md").read_text()
    section = readme[readme.index("**Who may connect.**") :]
    block = section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", 10)]
    (patch,) = yaml.safe_load(block)["patches"]
    assert patch["target"] == {"kind": "NetworkPolicy", "name": "singleuser"}
    return str(patch["patch"])


def test_an_overlay_names_another_selector(tmp_path: Path) -> None:
    """deploy/README.md's way to admit a service by its own labels instead of the shipped one."""
    folder = overlay(tmp_path, "berdl")
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    kustomization["patches"] = [
        {"target": {"kind": "NetworkPolicy", "name": "singleuser"}, "patch": readme_selector_patch()}
    ]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    policies = [o for o in render(folder) if o["kind"] == "NetworkPolicy"]
    alice = pod("alice", "10.1.0.10", spawner_pod("alice"), "berdl")
    mcp = Peer("mcp", "10.4.0.5", {"app": "datalake-mcp"}, "datalake")
    labelled = Peer("labelled", "10.4.0.6", {SPARK_CONNECT_ACCESS: "true"}, "elsewhere")
    assert allowed(policies, mcp, alice, 15002)
    assert not allowed(policies, labelled, alice, 15002)  # the shipped selector is replaced
