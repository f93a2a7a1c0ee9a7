"""A user's server for the hub tests: the smallest HTTP server JupyterHub can spawn and route to.

Run by SimpleLocalProcessSpawner as `python -m hubtest_userserver`; it listens where the hub says
(JUPYTERHUB_SERVICE_URL) and answers every GET with the user's name, so a test can tell through the
proxy whether the user's route is there.
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"server of {os.environ['JUPYTERHUB_USER']}\n".encode()
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
