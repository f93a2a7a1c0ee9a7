"""The simulated users of the load test, driven by locust: run as a process of its own by under_load.py.

    python bench/load_users.py --public-url URL --accounts FILE --users N --spawn-rate R
        --idle S --probe-every S --patience S --faults FILE --timeline FILE --stats FILE

locust patches the standard library with gevent when it is imported, so it lives in this process only,
never in the stack's or pytest's. Each simulated user does, once, what a person does in the browser:

1. log in: the `kbase_session` cookie KBase's login page leaves, then GET /hub/login (a navigation from
   the hub's own page, so `Sec-Fetch-Site: same-origin`), on to the home page (which sets `_xsrf`);
2. start: POST /hub/api/users/NAME/server with the `_xsrf` header, as the home page's Start button does;
3. wait: the progress event stream until it says ready (a failed start is started again);
4. kernel: the server's page (the OAuth round trip through the hub), POST api/kernels, and a cell run
   over the kernel's websocket, its printed answer checked;
5. idle: the same cell again every `--probe-every` seconds for `--idle` seconds, and, when the run
   injects faults, until one answer came after the faults ended (or `--patience` ran out); then DELETE
   the server and wait until the hub says it is gone.

Every attempt of a step is one locust request event (name = the step, exception = what failed, by kind,
never a user's name or token), so locust's own statistics count the failures by kind. A failed step is
tried again until `--patience` seconds after the user began: a fault may pass. Each step's attempts go to
the timeline (JSON lines: user, step, start, end, ok, kind) that load_report.py reads.

`--accounts` is a JSON list of {"name", "token"} (mode 0600): the users' KBase tokens never reach the
command line, the output or the timeline.
"""

# ruff: noqa: E402  (the imports come after gevent's patching, below)
from __future__ import annotations

# gevent patches the standard library first: requests and urllib3 build an ssl context when imported,
# which an ssl module patched afterwards makes recurse without end.
from gevent import monkey

monkey.patch_all()

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import gevent
import requests
import websocket
from locust import User, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

T = TypeVar("T")

CODE, ANSWER = "print(6 * 7)", "42"
#: Each HTTP call's own deadline; a start's wait is the progress stream's, bounded by the patience.
HTTP_TIMEOUT = 60
#: Between two attempts of a failed step.
RETRY_PAUSE = 2.0


class StepFailed(Exception):
    """A step's failure, said by kind (the same words for every user, so that locust's table groups them)."""


def kind_of(error: BaseException) -> str:
    """What failed, in words that hold no user's name, token or port: locust groups failures by them."""
    if isinstance(error, StepFailed):
        return str(error)
    if isinstance(error, requests.Timeout):
        return "HTTP timeout"
    if isinstance(error, requests.ConnectionError):
        return "HTTP connection failed"
    if isinstance(error, websocket.WebSocketException):
        return f"websocket: {type(error).__name__}"
    return type(error).__name__


class Plan:
    """The run's settings, read once from the command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.public_url: str = args.public_url.rstrip("/")
        self.accounts: Iterator[dict[str, str]] = iter(json.loads(Path(args.accounts).read_text()))
        self.idle: float = args.idle
        self.probe_every: float = args.probe_every
        self.patience: float = args.patience
        self.faults = Path(args.faults)
        self.timeline = open(args.timeline, "a", buffering=1)  # noqa: SIM115  closed at the process's end

    def faults_ended(self) -> float | None:
        """When the run's faults ended (the orchestrator writes it), None while they go on; 0.0 for a run
        without faults."""
        try:
            document = json.loads(self.faults.read_text())
        except (OSError, ValueError):
            return None
        return float(document["ended"]) if document.get("ended") is not None else None


PLAN: Plan


class HubUser(User):
    """One person, once through the whole journey."""

    wait_time = constant(0)

    def on_start(self) -> None:
        account = next(PLAN.accounts)
        self.name, self._token = account["name"], account["token"]
        self.http = requests.Session()
        self.began = time.time()
        self.kernel_id = ""

    # --- the mechanism: one event per attempt, retried until the patience runs out -------------------
    def attempt(self, step: str, action: Callable[[], T]) -> T:
        while True:
            started = time.time()
            try:
                result = action()
            except Exception as error:
                self.record(step, started, error)
                if time.time() - self.began > PLAN.patience:
                    raise StopUser() from error
                gevent.sleep(RETRY_PAUSE)
                continue
            self.record(step, started, None)
            return result

    def once(self, step: str, action: Callable[[], object]) -> bool:
        """One attempt, recorded; whether it succeeded."""
        started = time.time()
        try:
            action()
        except Exception as error:
            self.record(step, started, error)
            return False
        self.record(step, started, None)
        return True

    def record(self, step: str, started: float, error: BaseException | None) -> None:
        ended = time.time()
        kind = None if error is None else kind_of(error)
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type="STEP",
            name=step,
            response_time=(ended - started) * 1000,
            response_length=0,
            exception=None if kind is None else StepFailed(kind),
            context={},
        )
        line = {"user": self.name, "step": step, "start": started, "end": ended, "ok": error is None}
        PLAN.timeline.write(json.dumps({**line, "kind": kind}) + "\n")

    # --- HTTP as the browser does it ----------------------------------------------------------------
    def url(self, path: str) -> str:
        return PLAN.public_url + path.replace("{name}", self.name)

    def xsrf(self, path: str) -> dict[str, str]:
        """The header the page's JavaScript sends: the `_xsrf` cookie of that path."""
        for cookie in self.http.cookies:
            if cookie.name == "_xsrf" and path.startswith(cookie.path or "/"):
                return {"X-XSRFToken": cookie.value or ""}
        raise StepFailed(f"no _xsrf cookie for {path.split('/')[1]}/")

    def call(self, method: str, path: str, ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        answer = self.http.request(method, self.url(path), timeout=HTTP_TIMEOUT, **kwargs)
        if answer.status_code not in ok:
            raise StepFailed(f"HTTP {answer.status_code} on {method} {path}")
        return answer

    # --- the journey ---------------------------------------------------------------------------------
    @task
    def journey(self) -> None:
        self.attempt("login", self.log_in)
        pressed = time.time()
        PLAN.timeline.write(json.dumps({"user": self.name, "step": "pressed", "start": pressed}) + "\n")
        # A start the progress stream reports failed, or a stream a restarted hub cut, is started again.
        while True:
            self.attempt("start", self.request_start)
            if self.once("progress", self.follow_progress):
                break
            if time.time() - self.began > PLAN.patience:
                raise StopUser()
            gevent.sleep(RETRY_PAUSE)
        self.attempt("kernel", self.open_kernel)
        self.attempt("probe", self.run_cell)
        self.idle()
        self.attempt("stop", self.stop_server)
        raise StopUser()

    def log_in(self) -> None:
        host = PLAN.public_url.split("://", 1)[1].split(":")[0]
        self.http.cookies.set("kbase_session", self._token, domain=host, path="/")
        answer = self.call(
            "GET", "/hub/login?next=/hub/home", (200,), headers={"Sec-Fetch-Site": "same-origin"}
        )
        if not answer.url.endswith("/hub/home"):
            raise StepFailed("login did not lead to the home page")

    def request_start(self) -> None:
        """The Start button's request. A server the hub already has, running or pending (an attempt cut
        by a fault started it; a restarted hub checks the servers it finds: "pending check"), is
        followed as it is, as the home page's spawn-pending page follows it."""
        path = "/hub/api/users/{name}/server"
        answer = self.call("POST", path, (201, 202, 400), headers=self.xsrf("/hub/"), json={})
        if answer.status_code == 400 and not re.search(r"is already running|is pending", answer.text):
            raise StepFailed(f"HTTP 400 on POST {path}")

    def follow_progress(self) -> None:
        path = "/hub/api/users/{name}/server/progress"
        with self.http.get(self.url(path), stream=True, timeout=HTTP_TIMEOUT) as stream:
            if stream.status_code != 200:
                raise StepFailed(f"HTTP {stream.status_code} on GET {path}")
            for raw in stream.iter_lines():
                line = raw.decode()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("failed"):
                    raise StepFailed("start failed (the progress stream said so)")
                if event.get("ready"):
                    return
        raise StepFailed("the progress stream ended before the server was ready")

    def open_kernel(self) -> None:
        """The server's page (the OAuth round trip through the hub sets its cookie), then a kernel."""
        self.call("GET", "/user/{name}/", (200,))
        if not self.kernel_id:
            headers = self.xsrf(f"/user/{self.name}/")
            answer = self.call("POST", "/user/{name}/api/kernels", (201,), headers=headers, json={})
            self.kernel_id = answer.json()["id"]

    def run_cell(self) -> None:
        """The cell over the kernel's websocket (a new connection, as a reloaded JupyterLab opens); its
        printed answer checked."""
        ws_url = self.url(f"/user/{{name}}/api/kernels/{self.kernel_id}/channels").replace("http", "ws", 1)
        # The cookies a browser sends there: those of the server's path (the server's own login, _xsrf).
        server = f"/user/{self.name}/"
        cookies = "; ".join(
            f"{c.name}={c.value}"
            for c in self.http.cookies
            if server.startswith(c.path or "/") and c.path != "/"
        )
        connection = websocket.create_connection(ws_url, cookie=cookies, timeout=HTTP_TIMEOUT)
        try:
            msg_id = uuid.uuid4().hex
            connection.send(json.dumps(execute_request(msg_id, self.name, CODE)))
            deadline = time.time() + HTTP_TIMEOUT
            while time.time() < deadline:
                message = json.loads(connection.recv())
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                content = message.get("content", {})
                if message["msg_type"] == "stream":
                    if content.get("text", "").strip() != ANSWER:
                        raise StepFailed("the kernel printed another answer")
                    return
                if message["msg_type"] == "error":
                    raise StepFailed("the kernel answered with an error")
            raise StepFailed("no answer from the kernel in time")
        finally:
            connection.close()

    def idle(self) -> None:
        """Idle for the plan's time, a cell now and then; with faults, until a cell answered after them."""
        idle_since = answered = time.time()
        while True:
            ended = PLAN.faults_ended()
            if time.time() - idle_since >= PLAN.idle and ended is not None and answered > ended:
                return
            if time.time() - self.began > PLAN.patience:
                return
            gevent.sleep(PLAN.probe_every)
            started = time.time()
            try:
                self.run_cell()
            except Exception as error:
                self.record("probe", started, error)
                gevent.sleep(RETRY_PAUSE)
                # A restarted proxy or hub: the server's page again (its cookie may need the OAuth trip).
                with_kernel = time.time()
                try:
                    self.open_kernel()
                except Exception as again:
                    self.record("kernel", with_kernel, again)
                else:
                    self.record("kernel", with_kernel, None)
                continue
            self.record("probe", started, None)
            answered = time.time()

    def stop_server(self) -> None:
        path = "/hub/api/users/{name}/server"
        self.call("DELETE", path, (202, 204, 400), headers=self.xsrf("/hub/"))
        deadline = time.time() + HTTP_TIMEOUT * 5
        while time.time() < deadline:
            user = self.call("GET", "/hub/api/users/{name}", (200,)).json()
            server = (user.get("servers") or {}).get("")
            if not server:
                return
            gevent.sleep(1)
        raise StepFailed("the server was not stopped in time")


def execute_request(msg_id: str, username: str, code: str) -> dict[str, Any]:
    """A Jupyter messaging protocol 5.3 execute_request, as JupyterLab sends it over the websocket."""
    header = {
        "msg_id": msg_id,
        "username": username,
        "session": msg_id,
        "msg_type": "execute_request",
        "version": "5.3",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}


def locust_stats(environment: Environment) -> dict[str, Any]:
    """locust's own statistics: each step's attempts and failures, and the failures by kind."""
    steps = [
        {
            "name": entry.name,
            "attempts": entry.num_requests,
            "failures": entry.num_failures,
            "median_ms": entry.median_response_time,
            "p95_ms": entry.get_response_time_percentile(0.95),
        }
        for entry in environment.stats.entries.values()
    ]
    errors = [
        {"step": error.name, "kind": str(error.error), "occurrences": error.occurrences}
        for error in environment.stats.errors.values()
    ]
    return {"steps": steps, "errors": errors}


def main() -> int:
    global PLAN
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--public-url", required=True)
    parser.add_argument("--accounts", required=True, help="JSON list of {name, token}, mode 0600")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--spawn-rate", type=float, required=True, help="users arriving per second")
    parser.add_argument("--idle", type=float, default=20)
    parser.add_argument("--probe-every", type=float, default=5)
    parser.add_argument("--patience", type=float, default=600, help="seconds a user retries failed steps")
    parser.add_argument("--faults", required=True, help="the orchestrator's fault record (JSON)")
    parser.add_argument("--timeline", required=True)
    parser.add_argument("--stats", required=True)
    args = parser.parse_args()
    PLAN = Plan(args)

    environment = Environment(user_classes=[HubUser], events=events)
    runner = environment.create_local_runner()
    runner.start(args.users, spawn_rate=args.spawn_rate)
    # Every user runs its journey once, then stops: the run is over when the last one has.
    gevent.sleep(1)
    deadline = time.time() + args.users / args.spawn_rate + args.patience + 300
    while (runner.user_count > 0 or runner.state == "spawning") and time.time() < deadline:
        gevent.sleep(1)
    runner.quit()
    Path(args.stats).write_text(json.dumps(locust_stats(environment), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
