"""A user's server for the hub tests: the smallest HTTP server JupyterHub can spawn and route to.

Run by SimpleLocalProcessSpawner as `python -m tests.hub.hubtest_userserver` (SPAWNER_CONFIG, for the tests'
extra config); it listens where the hub says (JUPYTERHUB_SERVICE_URL) and answers every GET with the
user's name, and $BERDL_GREETING when the spawner sets it, so a test can tell through the proxy whether
the user's route is there and what the spawner's settings were.

`POST .../forward-kbase-token`, the token as its body, does what the notebook image's server extension
does with a newer KBase token: it sends it to the hub's token_refresh endpoint with this server's own API
token, and answers with the hub's status and body.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FORWARD = "/forward-kbase-token"

# For the tests' extra config (after test_hub.EXTRA_CONFIG, which defines `name`, the test service):
# this server as the user's, and a role that lets the test service create users and start servers.
SPAWNER_CONFIG = """
import sys
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.Spawner.cmd = [sys.executable, "-m", "tests.hub.hubtest_userserver"]
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
# The users of these tests are made through the API, with no KBase login whose token a spawn would check.
c.KBaseAuthenticator.refresh_pre_spawn = False
spawn_scopes = ["servers", "admin:users"]
c.JupyterHub.load_roles.append({{"name": "berdl-test-spawn", "scopes": spawn_scopes, "services": [name]}})
"""


def forward(token: str) -> tuple[int, bytes]:
    """POST the token to the hub as the notebook image's server extension does; the hub's answer."""
    request = urllib.request.Request(
        os.environ["JUPYTERHUB_API_URL"] + "/berdl/kbase-token",
        data=json.dumps({"token": token}).encode(),
        headers={
            "Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


class Answer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if not self.path.endswith(FORWARD):
            self.send_error(404)
            return
        token = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        status, body = forward(token)
        answer = json.dumps({"status": status, "body": body.decode(errors="replace")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        greeting = os.environ.get("BERDL_GREETING")
        text = f"server of {os.environ['JUPYTERHUB_USER']}\n" + (f"{greeting}\n" if greeting else "")
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet: the hub's log is the one read
        pass


if __name__ == "__main__":
    where = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    ThreadingHTTPServer((where.hostname or "127.0.0.1", where.port or 80), Answer).serve_forever()
