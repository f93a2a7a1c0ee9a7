"""The whole system, end to end: a real browser logs in on the KBase login stand-in and works in
JupyterLab, on the pod the hub's own spawn created and the node played with the real images.

The steps run in order on one stack (localhub/stack.py) and build on each other; each asserts what the
user sees or what the system holds. Screenshots and every process's log are in .work/e2e/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localhub.browser import UserBrowser
from localhub.prometheus import MONITORING, Prometheus, running_prometheus
from localhub.stack import SHARED_IN_POD, Stack
from localhub.standins.kbase_auth2 import ADMIN_ROLE, APPROVED_ROLE
from tests.conftest import require_tool
from tests.deploy.monitoring import series_named
from tests.e2e.conftest import E2E_WORK, PROBE_PACKAGE, REVOCATION_BOUND_SECONDS
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
def prometheus(stack: Stack) -> Iterator[Prometheus]:
    """A real Prometheus (Debian's), with the stack's scrape configuration (deploy/monitoring's job and
    rules, the hub on 127.0.0.1), scraping the hub throughout the journey."""
    require_tool("prometheus")
    assert stack.prometheus_config is not None
    with running_prometheus(stack.prometheus_config, stack.log_dir / "prometheus") as running:
        yield running


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
        "    'user_is_hers': os.environ.get('USER') == 'alice',\n"
        "    'spark_connect_is_her_service':\n"
        "        os.environ.get('SPARK_CONNECT_URL') == 'sc://jupyter-alice.berdl:15002'}))"
    )
    reported = alice.json_from_notebook(probe, new=True)
    alice.shot("notebook-environment")
    alice.save_as("environment.ipynb")  # saved with its kernel: JupyterLab reopens it after a restart
    assert reported["missing"] == []
    assert reported["pod_ip_is_hers"] is True
    assert reported["pod_name_is_hers"] is True
    assert reported["user_is_hers"] is True
    assert reported["spark_connect_is_her_service"] is True


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


def test_5_prometheus_scraped_each_of_berdls_series_with_what_happened(
    stack: Stack, prometheus: Prometheus
) -> None:
    """Two spawns (alice's, bob's) and one stop (alice's, by herself) so far; then a restarted proxy. The
    values come from a PromQL query over Prometheus's HTTP API, after a scrape that followed the stop."""
    prometheus.wait_for_scrape()

    def total(series: str) -> float:
        return prometheus.value(f"sum({series})") or 0.0

    assert total('jupyterhub_server_spawn_duration_seconds_count{status="success"}') == 2
    assert total('berdl_spark_cluster_starts_total{outcome="created"}') == 2
    assert total('berdl_spark_cluster_starts_total{outcome!="created"}') == 0
    assert total('berdl_spark_cluster_create_duration_seconds_count{outcome="created"}') == 2
    assert total('berdl_spark_cluster_create_duration_seconds_sum{outcome="created"}') > 0
    assert total('berdl_spark_cluster_delete_duration_seconds_count{outcome="deleted"}') == 1
    assert total('berdl_minio_credentials_fetch_duration_seconds_count{outcome="ok"}') == 2
    # berdl-init's own summary, as the node reported it from its termination-message file.
    ended = prometheus.query("sum by (result, exit_status) (berdl_init_runs_total) > 0")
    runs = {(r["metric"]["result"], r["metric"]["exit_status"]): float(r["value"][1]) for r in ended}
    assert runs == {("changed", "0"): 2}, runs
    assert total('berdl_init_duration_seconds_count{result="changed"}') == 2
    assert total("berdl_init_duration_seconds_sum") > 0
    for part in ("hub", "spark", "init", "server"):
        assert total(f'berdl_spawn_part_duration_seconds_count{{part="{part}"}}') == 2, part
    assert total('berdl_auth2_check_duration_seconds_count{outcome="valid"}') >= 2  # two logins at least
    assert total('berdl_auth2_check_duration_seconds_count{outcome!="valid"}') == 0
    objects = "berdl_server_object_duration_seconds_count"
    assert total(f'{objects}{{kind="Secret", operation="create", outcome="ok"}}') == 2
    assert total(f'{objects}{{kind="Secret", operation="delete", outcome="ok"}}') == 1
    assert total(f'{objects}{{outcome="failed"}}') == 0
    assert total('berdl_server_stops_total{by="user"}') == 1
    assert total('berdl_server_stops_total{by!="user"}') == 0  # no culler here (BERDL_IDLE_TIMEOUT=0)
    assert total("berdl_proxy_route_restores_total") == 0
    # No user name in any label of BERDL's series.
    for series in prometheus.query('{__name__=~"berdl_.+"}'):
        assert not {"alice", "bob"} & set(series["metric"].values()), series["metric"]

    stack.restart_proxy()
    eventually(lambda: prometheus.value('sum(berdl_proxy_route_restores_total{outcome="ok"})') == 1,
               "Prometheus sees berdl-proxy-watch's restore", timeout=120)  # fmt: skip


def test_5_the_dashboard_and_the_alerts_read_series_prometheus_has(prometheus: Prometheus) -> None:
    """Every series deploy/monitoring's Grafana dashboard and alerting rules name exists, after these
    spawns; Prometheus evaluates every rule without an error."""
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    named = {
        name for panel in dashboard["panels"] for t in panel["targets"] for name in series_named(t["expr"])
    }
    groups = prometheus.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules} >= {"BERDLHubDown", "BERDLSpawnFailures", "BERDLInitFailing"}
    named |= {name for rule in rules for name in series_named(rule["query"])}
    missing = sorted(name for name in named if not prometheus.query(f'count({{__name__="{name}"}})'))
    assert missing == []
    assert [rule["name"] for rule in rules if rule["health"] != "ok"] == []
    assert [rule["name"] for rule in rules if rule["state"] == "firing"] == []


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


# What a kernel reports of its KBase token: digests only, never the token. The cell waits, up to 90 s
# (within the browser's wait for its output), for KBASE_AUTH_TOKEN to change; `waiting` shows it runs
# before the renewal.
WAIT_FOR_A_NEW_TOKEN = """import hashlib, json, os, time
digest = lambda text: hashlib.sha256(text.encode()).hexdigest()
before = os.environ["KBASE_AUTH_TOKEN"]
print("waiting", flush=True)
deadline = time.time() + 90
while os.environ["KBASE_AUTH_TOKEN"] == before and time.time() < deadline:
    time.sleep(0.5)
changed_at = time.time()
path = os.path.expanduser("~/.berdl_kbase_session")
print(json.dumps({"env": digest(os.environ["KBASE_AUTH_TOKEN"]), "file": digest(open(path).read().strip()),
                  "mode": oct(os.stat(path).st_mode & 0o777), "changed_at": changed_at}))"""
#: The figures steps 7 and 8 measured, for docs/reliability.md.
TOKEN_FIGURES = E2E_WORK / "token-life.json"


def record(figure: str, seconds: float) -> None:
    figures = json.loads(TOKEN_FIGURES.read_text()) if TOKEN_FIGURES.exists() else {}
    figures[figure] = round(seconds, 1)
    TOKEN_FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{figure}: {seconds:.1f} s", file=sys.stderr)


def test_7_a_new_kbase_login_reaches_her_running_kernel(stack: Stack, alice: UserBrowser) -> None:
    """Her kernel (started in step 6) runs a cell that waits; her KBase token is replaced by a new
    login, in another tab, and her browser carries the new cookie. With no visit to /hub, during
    ordinary JupyterLab use, the waiting cell sees the new token in its environment, and the file
    BERDL's utilities read holds it (mode 0600); so does her server's Secret, for a restarted container."""
    secrets_before = stack.standins.objects("v1/secrets")["jupyter-alice-credentials"]["data"]
    cell = alice.start_in_notebook(WAIT_FOR_A_NEW_TOKEN)
    cell.locator(".jp-OutputArea-output", has_text="waiting").wait_for()
    navigations = list(alice.visited)

    auth2 = stack.standins.auth2
    new = auth2.issue_token("alice")  # a new KBase login (the old token stays valid, as KBase's does)
    stack.secrets.append(new)
    kbase = alice.page.context.new_page()  # she logs in to KBase again in another tab
    kbase.goto(f"{stack.standins.auth2_url}/login?redirect=/login")
    kbase.click('button[value="alice"]')
    kbase.wait_for_load_state()
    carried = {c["name"]: c["value"] for c in alice.page.context.cookies(stack.public_url)}
    assert carried["kbase_session"] == new, "the browser does not carry the new KBase cookie"
    kbase.close()
    logged_in_again = time.time()

    reported = json.loads(alice.printed_by(cell).strip().splitlines()[-1])
    assert reported["env"] == sha256(new), "the waiting cell's KBASE_AUTH_TOKEN is not the new token"
    assert reported["file"] == sha256(new), "~/.berdl_kbase_session does not hold the new token"
    assert reported["mode"] == "0o600"
    assert alice.visited == navigations  # her window stayed in JupyterLab: no visit to /hub
    record("new KBase login to a running kernel's KBASE_AUTH_TOKEN", reported["changed_at"] - logged_in_again)
    secret = stack.standins.objects("v1/secrets")["jupyter-alice-credentials"]["data"]
    held = base64.b64decode(secret["KBASE_AUTH_TOKEN"]).decode()
    assert sha256(held) == sha256(new), "her server's Secret does not hold the new token"
    assert {k: v for k, v in secret.items() if k != "KBASE_AUTH_TOKEN"} == {
        k: v for k, v in secrets_before.items() if k != "KBASE_AUTH_TOKEN"
    }
    alice.shot("token-renewed")


def test_7b_a_hub_admin_cannot_open_alices_server(stack: Stack, alice: UserBrowser, bob: UserBrowser) -> None:
    """bob becomes a hub admin (a KBase admin role; he signs in again). JupyterHub 5's admin role holds
    access:servers, and alice's server would receive his cookies, his KBase token among them; her server
    asks every visitor for a scope only she holds (BERDLSpawner.access_for_owner_only), and refuses him."""
    stack.standins.auth2.set_roles("bob", [APPROVED_ROLE, ADMIN_ROLE])
    bob.page.goto(f"{stack.public_url}/hub/logout")
    bob.page.goto(f"{stack.public_url}/hub/login")  # from his KBase cookie: a new login, as an admin
    admin_page = bob.page.goto(f"{stack.public_url}/hub/admin")
    assert admin_page is not None
    assert admin_page.status == 200, "bob is no hub admin"
    bob.page.goto(f"{stack.public_url}/user/alice/lab")
    authorize = bob.page.locator("input[type=submit][value=Authorize], button:has-text('Authorize')")
    if authorize.count():  # JupyterHub asks a visitor to confirm the OAuth grant
        with bob.page.expect_navigation():
            authorize.first.click()
    bob.shot("admin-at-alices-server")
    text = bob.page.locator("body").inner_text()
    assert bob.page.locator(".jp-LabShell").count() == 0, "bob, an admin, opened alice's JupyterLab"
    assert "403" in text, text[:500]
    assert "not allowed" in text, text[:500]
    stack.standins.auth2.set_roles("bob", [APPROVED_ROLE])
    assert "jupyter-alice" in podman_pods(stack)


def test_8_a_role_taken_away_stops_his_server_with_no_browser_of_his_open(
    stack: Stack, bob: UserBrowser
) -> None:
    """bob's server runs (step 4); he closes his browser; his role is taken away. Within the bound (the
    hub's check interval, conftest's REVOCATION_CHECK_SECONDS, a round of checks and the stop:
    REVOCATION_BOUND_SECONDS), his pod, Secret and Spark cluster are gone, and the hub's log says why in
    one line."""
    bob.page.context.close()
    token = stack.users["bob"].kbase_token
    assert token in stack.standins.spark.clusters
    deleted_before = stack.standins.spark.deleted
    stack.standins.auth2.set_roles("bob", [])
    taken_away = time.monotonic()
    eventually(
        lambda: "jupyter-bob" not in stack.standins.objects("v1/pods"),
        "his pod is gone from the API",
        timeout=REVOCATION_BOUND_SECONDS,
    )
    record("role taken away to his pod deleted", time.monotonic() - taken_away)
    within = max(REVOCATION_BOUND_SECONDS - (time.monotonic() - taken_away), 1)
    eventually(
        lambda: "jupyter-bob-credentials" not in stack.standins.objects("v1/secrets"),
        "his Secret is gone",
        timeout=within,
    )
    within = max(REVOCATION_BOUND_SECONDS - (time.monotonic() - taken_away), 1)
    eventually(
        lambda: stack.standins.spark.deleted == deleted_before + 1,
        "his Spark cluster is deleted",
        timeout=within,
    )
    cluster_left = token in stack.standins.spark.clusters  # a bool: a failed assert prints no token
    assert not cluster_left
    eventually(lambda: "jupyter-bob" not in podman_pods(stack), "his pod is gone from podman")
    record("role taken away to his pod, Secret and cluster gone", time.monotonic() - taken_away)
    line = "Stopping the servers of bob (bob): the KBase account no longer holds a role this hub needs"
    assert line in stack.logs()
    assert "jupyter-alice" in podman_pods(stack)  # alice's server runs on
