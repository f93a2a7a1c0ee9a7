"""The whole system, end to end: a real browser logs in on the KBase login stand-in and works in
JupyterLab, on the pod the hub's own spawn created and the node played with the real images.

The steps run in order on one stack (localhub/stack.py) and build on each other; each asserts what the
user sees or what the system holds. Screenshots and every process's log are in .work/e2e/.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from localhub.browser import UserBrowser
from localhub.stack import SHARED_IN_POD, Stack
from tests.e2e.conftest import E2E_WORK, PROBE_PACKAGE
from tests.e2e.probes import eventually, pod_of, podman_pods
from tests.hub.hubtest_support import assert_no_secret_in
from tests.hub.test_notebook_environment import REQUIRED

pytestmark = pytest.mark.slow

VENV_IN_POD = "/home/alice/.virtualenvs/envs/alice_default_env"
CREDENTIALS = ("KBASE_AUTH_TOKEN", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")
# What the notebook reports: only digests of the credentials, so that no screenshot holds one.
ENVIRONMENT_PROBE = f"""import hashlib, json, os, sys
digest = lambda name: hashlib.sha256(os.environ.get(name, "").encode()).hexdigest()
print(json.dumps({{"prefix": sys.prefix, "spark": os.environ.get("SPARK_MASTER_URL"),
                  "digests": {{name: digest(name) for name in {CREDENTIALS!r}}}}}))"""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def alice(stack: Stack, browser: Any) -> UserBrowser:
    return UserBrowser.open(browser, "alice", stack.public_url, E2E_WORK / "shots")


@pytest.fixture(scope="module")
def bob(stack: Stack, browser: Any) -> UserBrowser:
    return UserBrowser.open(browser, "bob", stack.public_url, E2E_WORK / "shots")


@pytest.fixture(scope="module", autouse=True)
def no_secret_in_any_log(stack: Stack) -> Iterator[None]:
    """After the journey: no token, key or password in any log of any process, pods included."""
    yield
    assert_no_secret_in(stack.logs(), stack.secrets)


def test_1_login_and_spawn(stack: Stack, alice: UserBrowser) -> None:
    alice.log_in_on_kbase()
    assert any(url.startswith(stack.standins.auth2_url + "/login") for url in alice.visited), alice.visited
    assert alice.page.context.cookies(stack.public_url)[0]["name"] in {
        "kbase_session",
        "jupyterhub-session-id",
    }
    assert "kbase_session" in {c["name"] for c in alice.page.context.cookies(stack.public_url)}
    alice.start_server()
    assert any("/hub/spawn-pending/alice" in url for url in alice.visited), alice.visited
    assert alice.path().startswith("/user/alice/lab")
    alice.shot("lab")


def test_2_jupyterlab_opens_in_the_home_where_the_launchers_first_notebook_saves(
    stack: Stack, alice: UserBrowser
) -> None:
    """What a person does first: the Launcher's "Python 3" notebook, in the folder JupyterLab opened."""
    alice.new_notebook()
    alice.shot("first-notebook")
    assert alice.folder() == "home/alice"
    assert (stack.home("alice") / "Untitled.ipynb").is_file()


def test_2_jupyterlab_favorites(alice: UserBrowser) -> None:
    assert alice.favorites() == ["Home", "Shared"]
    alice.shot("favorites")


def test_2_notebook_runs_in_the_home_venv_with_the_user_environment(stack: Stack, alice: UserBrowser) -> None:
    reported = alice.json_from_notebook(ENVIRONMENT_PROBE)  # in the notebook the step before made
    alice.shot("notebook")
    user = stack.users["alice"]
    cluster = stack.standins.spark.clusters[user.kbase_token]
    assert reported["prefix"] == VENV_IN_POD
    assert reported["spark"] == f"spark://spark-master-{cluster}:7077"  # as the Spark stand-in answered
    assert reported["digests"] == {
        "KBASE_AUTH_TOKEN": sha256(user.kbase_token),
        "MINIO_ACCESS_KEY": sha256(user.minio_access_key),
        "MINIO_SECRET_KEY": sha256(user.minio_secret_key),
    }


def test_2_pip_install_in_a_notebook_lands_in_the_home(stack: Stack, alice: UserBrowser) -> None:
    wheel = next((stack.shared / "wheels").glob(f"{PROBE_PACKAGE}-*.whl"))
    printed = alice.run_in_notebook(
        f"%pip install --no-index {SHARED_IN_POD}/wheels/{wheel.name}\nprint(json.dumps('pip done'))"
    )
    assert "Successfully installed" in printed, printed
    venv = stack.home("alice") / VENV_IN_POD.removeprefix("/home/alice/")
    installed = list(venv.glob(f"lib/python3*/site-packages/{PROBE_PACKAGE}/__init__.py"))
    assert len(installed) == 1, printed
    assert installed[0].stat().st_uid == 1000
    alice.save_as("journey.ipynb")
    assert (stack.home("alice") / "journey.ipynb").is_file()
    alice.shot("notebook-output")


def test_2_terminal_shows_the_venv_prompt(alice: UserBrowser) -> None:
    text = alice.terminal_text("echo venv: $VIRTUAL_ENV")
    alice.shot("terminal")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].startswith("(alice_default_env) "), lines
    assert f"venv: {VENV_IN_POD}" in lines


def test_3_kubernetes_holds_no_credential_in_the_pod_and_an_owned_secret(stack: Stack) -> None:
    pod = pod_of(stack, "alice")
    user = stack.users["alice"]
    assert_no_secret_in(json.dumps(pod), user.secrets)
    secrets = stack.standins.objects("v1/secrets")
    owned = {
        name: secret
        for name, secret in secrets.items()
        if any(o.get("uid") == pod["metadata"]["uid"] for o in secret["metadata"].get("ownerReferences", []))
    }
    assert list(owned) == ["jupyter-alice-credentials"], list(secrets)
    owner = owned["jupyter-alice-credentials"]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Pod", "jupyter-alice")


def test_3_her_notebook_has_every_variable_berdls_notebook_requires(stack: Stack, alice: UserBrowser) -> None:
    """What BERDL's production notebook checks at start (tests/hub/test_notebook_environment.REQUIRED), in
    her kernel's os.environ; the notebook prints names and comparisons only, never a value."""
    pod = pod_of(stack, "alice")
    probe = (
        "import json, os\n"
        f"required = {sorted(REQUIRED)!r}\n"
        "print(json.dumps({'missing': [n for n in required if not os.environ.get(n)],\n"
        f"    'pod_ip_is_hers': os.environ.get('BERDL_POD_IP') == {pod['status']['podIP']!r},\n"
        f"    'pod_name_is_hers': os.environ.get('BERDL_POD_NAME') == {pod['metadata']['name']!r},\n"
        "    'user': os.environ.get('USER'), 'spark_connect': os.environ.get('SPARK_CONNECT_URL')}))"
    )
    reported = alice.json_from_notebook(probe, new=True)
    alice.shot("notebook-environment")
    alice.save_as("environment.ipynb")  # saved with its kernel: JupyterLab reopens it after a restart
    assert reported["missing"] == []
    assert reported["pod_ip_is_hers"] is True
    assert reported["pod_name_is_hers"] is True
    assert reported["user"] == "alice"
    assert reported["spark_connect"] == "sc://jupyter-alice.berdl:15002"


def test_3_her_spark_connect_service_is_owned_by_her_pod(stack: Stack) -> None:
    pod = pod_of(stack, "alice")
    service = stack.standins.objects("v1/services")["jupyter-alice"]
    (owner,) = service["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", "jupyter-alice", pod["metadata"]["uid"])
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {port["port"] for port in service["spec"]["ports"]} == {8888, 15002}


def test_4_a_second_user_gets_a_pod_of_his_own(stack: Stack, alice: UserBrowser, bob: UserBrowser) -> None:
    bob.log_in_on_kbase()
    bob.start_server()
    assert bob.path().startswith("/user/bob/lab")
    assert bob.folder() == "home/bob"
    assert bob.favorites() == ["Home", "Shared"]
    bob.shot("lab")
    pods = {user: pod_of(stack, user) for user in ("alice", "bob")}
    assert pods["alice"]["status"]["phase"] == pods["bob"]["status"]["phase"] == "Running"
    assert pods["alice"]["status"]["podIP"] != pods["bob"]["status"]["podIP"]
    assert all(pod["status"]["podIP"].startswith("127.") for pod in pods.values())
    homes = {
        user: {v["hostPath"]["path"] for v in pod["spec"]["volumes"] if "hostPath" in v}
        for user, pod in pods.items()
    }
    assert homes["alice"] & homes["bob"] == {"/mnt/berdl/shared"}
    assert "/mnt/berdl/homes/alice" in homes["alice"]
    assert "/mnt/berdl/homes/bob" in homes["bob"]
    assert (stack.home("bob") / ".bashrc").is_file()
    assert not (stack.home("bob") / "journey.ipynb").exists()
    assert len(stack.standins.spark.clusters) == 2  # one cluster each
    assert {"jupyter-alice", "jupyter-bob"} <= podman_pods(stack)


def test_5_stop_from_the_control_panel(stack: Stack, alice: UserBrowser) -> None:
    token = stack.users["alice"].kbase_token
    deleted_before = stack.standins.spark.deleted
    alice.stop_server()
    eventually(
        lambda: "jupyter-alice" not in stack.standins.objects("v1/pods"), "the pod is gone from the API"
    )
    eventually(lambda: "jupyter-alice" not in podman_pods(stack), "the pod is gone from podman")
    eventually(
        lambda: "jupyter-alice-credentials" not in stack.standins.objects("v1/secrets"), "the Secret is gone"
    )
    cluster_left = token in stack.standins.spark.clusters  # a bool: a failed assert prints no token
    assert not cluster_left, "her Spark cluster is left after the stop"
    assert stack.standins.spark.deleted == deleted_before + 1
    assert "jupyter-bob" in podman_pods(stack)  # bob's server is not touched


def test_5_her_service_went_with_her_server(stack: Stack) -> None:
    eventually(
        lambda: "jupyter-alice" not in stack.standins.objects("v1/services"),
        "her Spark Connect Service is gone",
    )
    assert "jupyter-bob" in stack.standins.objects("v1/services")  # bob's server still has his


def test_6_start_again_keeps_the_files_and_changes_nothing(stack: Stack, alice: UserBrowser) -> None:
    alice.start_server()
    alice.shot("lab-again")
    assert (stack.home("alice") / "journey.ipynb").is_file()
    imported = alice.json_from_notebook(
        f"import json, {PROBE_PACKAGE} as probe; print(json.dumps(probe.MARKER))", new=True
    )
    assert imported == PROBE_PACKAGE
    report = json.loads(stack.standins.node.init_log("jupyter-alice", "berdl-init"))
    assert report["ok"] is True
    assert report["changes"] == [], report["changes"]
    # The first start's log is kept beside it: the one of the run that prepared the home.
    first, *_ = stack.standins.node.init_logs("jupyter-alice", "berdl-init")
    assert {"dirs", "dotfiles", "venv"} <= {change["step"] for change in json.loads(first)["changes"]}
