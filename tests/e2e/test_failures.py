"""The whole system when things fail: a berdl-init that fails for one user, a hub killed (SIGKILL) in the
middle of a spawn, and the idle culler stopping a server nobody uses. Each step ends with what the user
sees in the browser and with nothing left that no server owns: no pod (in the API or in podman), no
credentials Secret, no Spark cluster.

One stack for the module (its own work folder, .work/e2e-failures): the steps run in order, 6, 5 then
4, because step 4 starts the hub again with the culler on, which would stop the others' servers.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localhub.browser import SPAWN_TIMEOUT_MS, UserBrowser
from localhub.podman import Podman
from localhub.procs import descendants
from localhub.stack import Stack, running_stack
from localhub.users import make_users
from tests.conftest import require_tool
from tests.e2e.conftest import E2E_WORK
from tests.e2e.probes import OBSERVER_TOKEN, eventually, hub_user, observer_config, pod_of, podman_pods
from tests.hub.hubtest_support import assert_no_secret_in

pytestmark = pytest.mark.slow

WORK = E2E_WORK.with_name("e2e-failures")
SHOTS = WORK / "shots"
#: berdl-init fails for this user only: the operator's pre_spawn_hook gives it a setting with a typo,
#: which only berdl-init knows to be wrong (the hub checks none of BERDL_STEPS).
FAILING_USER = "erin"
BAD_SETTING = ("BERDL_STEPS", "dirs,venvs")
#: The culler of step 4: a server idle this long is stopped, checked this often (BERDL_CULL_EVERY).
IDLE_TIMEOUT, CULL_EVERY = 30, 5

EXTRA_CONFIG = f"""
def _invalid_init_setting_for_one_user(spawner):
    if spawner.user.name == {FAILING_USER!r}:
        spawner.init_environment = {{**spawner.init_environment, {BAD_SETTING[0]!r}: {BAD_SETTING[1]!r}}}


c.BERDLSpawner.pre_spawn_hook = _invalid_init_setting_for_one_user
# The test reads the hub's own view of its servers, with a token that may do nothing else.
""" + observer_config(["read:users", "read:servers"])


@pytest.fixture(scope="module")
def stack(podman: Podman) -> Iterator[Stack]:
    for tool in ("node", "runuser"):
        require_tool(tool)
    users = make_users("carol", "dave", FAILING_USER)
    with running_stack(WORK, users, extra_config=EXTRA_CONFIG) as running:
        running.secrets.append(OBSERVER_TOKEN)
        yield running


@pytest.fixture(scope="module", autouse=True)
def no_secret_in_any_log(stack: Stack) -> Iterator[None]:
    yield
    assert_no_secret_in(stack.logs(), stack.secrets)


def servers(stack: Stack, user: str) -> dict[str, Any]:
    """The user's servers as the hub's REST API lists them."""
    return hub_user(stack, user)["servers"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def inspect(stack: Stack, container: str) -> dict[str, Any] | None:
    return stack.standins.loop.run(stack.standins.node.podman.inspect(container))


def held_by_the_server(stack: Stack, user: str) -> dict[str, Any]:
    """What the user's one server holds now: its pod, the Secret the pod owns, the user's cluster."""
    pod = pod_of(stack, user)
    secret = stack.standins.objects("v1/secrets")[f"jupyter-{user}-credentials"]
    owners = [(o["kind"], o["uid"]) for o in secret["metadata"]["ownerReferences"]]
    return {
        "pod": pod["metadata"]["uid"],
        "secret owners": owners,
        "cluster": stack.standins.spark.clusters.get(stack.users[user].kbase_token),
    }


def assert_nothing_left(stack: Stack, user: str) -> None:
    """No pod in the API or in podman, no Secret, no Spark cluster for `user`."""
    pod = f"jupyter-{user}"
    eventually(lambda: pod not in stack.standins.objects("v1/pods"), f"{pod} is gone from the API")
    eventually(lambda: pod not in podman_pods(stack), f"{pod} is gone from podman")
    eventually(
        lambda: f"{pod}-credentials" not in stack.standins.objects("v1/secrets"), f"{pod}'s Secret is gone"
    )
    # The cluster goes last (the tear-down deletes the server's objects first), and a stop slower than
    # JupyterHub's 10 s is answered before it ends: waited for too. A bool, not a comparison: a failing
    # assertion would print the token and the Spark stand-in's state.
    token = stack.users[user].kbase_token
    eventually(lambda: token not in stack.standins.spark.clusters, f"{user}'s Spark cluster is gone")


def test_6_a_failing_init_container_shows_its_reason_and_leaves_nothing(stack: Stack, browser: Any) -> None:
    erin = UserBrowser.open(browser, FAILING_USER, stack.public_url, SHOTS)
    deleted_before = stack.standins.spark.deleted
    erin.log_in_on_kbase()
    erin.page.click("#start")
    erin.page.wait_for_url(re.compile(r".*/hub/spawn-pending/.*"))
    message = erin.page.locator("#progress-message")
    message.filter(has_text="Spawn failed").wait_for(timeout=SPAWN_TIMEOUT_MS)
    erin.shot("spawn-failed")
    # The line berdl-init printed in the pod (the node keeps its log: one line for each retry), as the
    # page shows it.
    printed = stack.standins.node.init_log(f"jupyter-{FAILING_USER}", "berdl-init", stream="stderr")
    (line,) = {x for x in printed.splitlines() if x.startswith("berdl-init: ")}
    reason = line.removeprefix("berdl-init: ")
    assert reason.startswith("invalid settings: BERDL_STEPS[1]='venvs': "), reason
    assert message.inner_text() == (
        f"Spawn failed: Your home could not be prepared: {reason} (berdl-init exited with status 2: "
        "its settings are invalid: the hub's spawner configuration needs fixing by an administrator)."
    )
    assert_nothing_left(stack, FAILING_USER)
    assert stack.standins.spark.deleted == deleted_before + 1  # the cluster made for the spawn is gone
    assert servers(stack, FAILING_USER) == {}
    erin.page.context.close()


@pytest.fixture
def carols_home_locked(stack: Stack) -> Iterator[Any]:
    """carol's home with berdl-init's lock held, as another berdl-init run on it would hold it (her
    second server starting at the same time): her berdl-init waits for it, and her spawn stays in its
    init container until the test closes the lock (which the fixture does at the latest)."""
    home = stack.home("carol")
    state = home / ".local" / "state" / "berdl-init"
    state.mkdir(parents=True)
    state.chmod(0o700)
    lock = state / "lock"
    lock.touch(mode=0o600)
    for path in (home, home / ".local", home / ".local" / "state", state, lock):
        os.chown(path, 1000, 100)  # as berdl-init leaves a home: the user's (docker-stacks' uid and gid)
    with lock.open("r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield held


def test_5_the_hub_killed_during_a_spawn(stack: Stack, browser: Any, carols_home_locked: Any) -> None:
    carol = UserBrowser.open(browser, "carol", stack.public_url, SHOTS)
    carol.log_in_on_kbase()
    carol.page.click("#start")
    carol.page.wait_for_url(re.compile(r".*/hub/spawn-pending/.*"))

    def berdl_init_waits() -> bool:
        init = inspect(stack, "jupyter-carol-berdl-init")
        return bool(init and init["State"].get("Running"))

    eventually(berdl_init_waits, "carol's berdl-init runs (and waits for her home's lock)")
    assert servers(stack, "carol")[""]["ready"] is False
    before = held_by_the_server(stack, "carol")
    assert before["secret owners"] == [("Pod", before["pod"])]
    assert before["cluster"] is not None
    pod_ip = pod_of(stack, "carol")["status"]["podIP"]

    killed = [stack.hub.popen.pid, *descendants(stack.hub.popen.pid)]  # the hub and its services
    assert len(killed) >= 2
    stack.stop_hub(kill=True)
    assert stack.hub.popen.returncode == -9
    eventually(lambda: not any(map(alive, killed)), "nothing of the killed hub's container runs")
    stack.start_hub()
    # JupyterHub checks each server its database holds: poll() says carol's runs (a Pending pod), so the
    # hub asks the spawner for the server's URL and waits for it there (init_spawners, check_spawner).
    eventually(lambda: "Verifying that carol is running at" in stack.logs(), "the new hub checks carol")
    carols_home_locked.close()  # the other run is done: carol's berdl-init goes on

    def settled() -> dict[str, Any] | None:
        server = servers(stack, "carol").get("")
        return None if server and not server["ready"] else {"server": server}

    outcome = eventually(settled, "the hub has decided on carol's server", timeout=600)["server"]
    carol.shot("after-the-kill")
    assert outcome is not None, "the hub stopped carol's server, which was coming up"
    assert f"Verifying that carol is running at http://{pod_ip}:8888/user/carol/" in stack.logs()
    # It came up: the same pod, its Secret, the user's cluster.
    assert held_by_the_server(stack, "carol") == before
    # carol's only (erin's went with her failed spawn); the ids, as the tokens must not be printed.
    assert list(stack.standins.spark.clusters.values()) == [before["cluster"]]

    # In the browser: the control panel's button leads to her JupyterLab.
    carol.page.goto(f"{stack.public_url}/hub/home")
    carol.page.click("#start")
    carol.page.wait_for_url(re.compile(r".*/user/carol/lab.*"), timeout=SPAWN_TIMEOUT_MS)
    carol.wait_for_lab()
    carol.shot("lab-after-the-kill")

    # The server owns all of it: stopping it takes the pod, the Secret and the cluster.
    deleted_before = stack.standins.spark.deleted
    carol.stop_server()
    assert_nothing_left(stack, "carol")
    assert stack.standins.spark.deleted == deleted_before + 1
    # And she can start again.
    carol.start_server()
    assert carol.path().startswith("/user/carol/lab")
    assert json.loads(stack.standins.node.init_log("jupyter-carol", "berdl-init"))["ok"] is True
    carol.page.context.close()  # no browser open: step 4's culler stops this server too


def test_4_the_idle_culler_stops_a_server_nobody_uses(stack: Stack, browser: Any) -> None:
    # dave works, then closes his browser (an open JupyterLab would keep reporting activity). His
    # server is started before the culler is on, so that no cull can come in the middle of its start.
    dave = UserBrowser.open(browser, "dave", stack.public_url, SHOTS)
    dave.log_in_on_kbase()
    dave.start_server()
    assert held_by_the_server(stack, "dave")["cluster"] is not None
    dave.page.context.close()

    # The operator turns culling on: a new hub pod with the two settings; the servers run on.
    stack.stop_hub()
    stack.start_hub(env={"BERDL_IDLE_TIMEOUT": str(IDLE_TIMEOUT), "BERDL_CULL_EVERY": str(CULL_EVERY)})
    culler = f"'--timeout={IDLE_TIMEOUT}', '--cull-every={CULL_EVERY}'"
    eventually(
        lambda: culler in stack.logs(), "the hub starts jupyterhub-idle-culler with both settings", timeout=60
    )

    eventually(lambda: servers(stack, "dave") == {}, "the hub no longer lists dave's server", timeout=300)
    assert re.search(r" 20[24] DELETE /hub/api/users/dave/server \(jupyterhub-idle-culler@", stack.logs())
    assert_nothing_left(stack, "dave")
    # carol's server, left without a browser by step 5, goes the same way.
    eventually(lambda: servers(stack, "carol") == {}, "the hub no longer lists carol's server", timeout=300)
    assert_nothing_left(stack, "carol")
    assert list(stack.standins.spark.clusters.values()) == []
