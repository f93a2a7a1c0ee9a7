"""Real processes of the local stack and the hub tests: PostgreSQL, configurable-http-proxy, JupyterHub.

Every process starts in its own session and is stopped with its whole process group (the hub's idle
culler service included), also when a test fails half-way.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from localhub.tools import REPO, find_tool


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float, process: Process | None = None, *, status: int | None = None) -> int:
    """Until `url` answers with `status`, or by default with any status below 500; returns the status.
    Fails early when the process behind it died."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited ({process.popen.returncode}):\n{process.log()}")
        with contextlib.suppress(httpx.HTTPError):
            last = httpx.get(url, timeout=2).status_code
            if last == status or (status is None and last < 500):
                return last
        time.sleep(0.1)
    wanted = status or "below 500"
    raise TimeoutError(f"{url} did not answer {wanted} in {timeout} s (last: {last or 'no answer'})")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15, *, kill: bool = False) -> int:
        """SIGTERM to the whole group, SIGKILL after `timeout` (at once with `kill`: no shutdown hook
        runs, as after an OOM kill); returns the exit status.

        Processes it started in sessions of their own (a hub's services, the user servers a local
        spawner starts, which a hub with cleanup_servers off leaves running) are killed too, so that no
        test leaves them behind."""
        below = descendants(self.popen.pid) if self.popen.poll() is None else []
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        # Members of the group that outlived their leader (a service the hub started) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.popen.returncode


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = command
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: its children, theirs, and so on."""
    below = list(children(pid))
    return below + [grandchild for child in below for grandchild in descendants(child)]


def start(name: str, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> Process:
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(name, popen, log_path)


def base_env() -> dict[str, str]:
    """A small environment for child processes: nothing of the test runner's secrets."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {k: os.environ[k] for k in keep if k in os.environ}


def proxy_command(port: int, api_port: int, hub_url: str) -> list[str]:
    # The proxy runs on the Node scripts/setup installs (.venv/bin), also when .venv is not activated:
    # its script's `#!/usr/bin/env node` would take whatever node comes first on PATH.
    node = find_tool("node")
    chp = find_tool(str(REPO / "node_modules" / ".bin" / "configurable-http-proxy"))
    return [
        node,
        chp,
        "--ip=127.0.0.1",
        f"--port={port}",
        "--api-ip=127.0.0.1",
        f"--api-port={api_port}",
        f"--default-target={hub_url}",
        f"--error-target={hub_url}/hub/error",
        "--log-level=debug",
    ]


def postgres_tool(name: str) -> str:
    """A PostgreSQL server program: on PATH, else where Debian's postgresql package puts it."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[::-1]), None
    )
    return find_tool(found or name)


@dataclass
class Postgres:
    url: str  # without a password, as the hub gets it
    password: str
    log_path: Path


def _as_postgres() -> list[str]:
    """The prefix that runs a server program as the `postgres` user: initdb refuses to run as root."""
    return [find_tool("runuser"), "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(path, owner.pw_uid, owner.pw_gid)


def stop_postgres(base: Path) -> None:
    """Stop the server whose data are in `base/data`, if one runs (also one a killed run left)."""
    data = base / "data"
    if (data / "postmaster.pid").exists():
        stop = [postgres_tool("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run([*_as_postgres(), *stop], capture_output=True, check=False)


@contextlib.contextmanager
def postgres_server(
    password: str, *, base: Path | None = None, log_path: Path | None = None
) -> Iterator[Postgres]:
    """PostgreSQL on 127.0.0.1 with password (SCRAM) authentication, and a database `jupyterhub` owned by
    the role `jupyterhub`.

    Without `base`: a throwaway server, in a temporary folder removed after, fsync off. With `base`: its
    data stay in `base/data`, and a later call with the same `base` and password finds the database as
    it was left (a server a killed run left running there is stopped first). It logs to `log_path`
    (by default `base/server.log`). As root, the server runs as the `postgres` user, in a folder it owns.
    """
    initdb, pg_ctl = postgres_tool("initdb"), postgres_tool("pg_ctl")
    as_postgres = _as_postgres()
    throwaway = base is None
    base = Path(tempfile.mkdtemp(prefix="berdl-hub-pg-")) if base is None else base
    base.mkdir(parents=True, exist_ok=True)
    _give_to_postgres(base)
    data, port = base / "data", free_port()
    log_path = log_path or base / "server.log"
    log_path.touch()
    _give_to_postgres(log_path)  # the server appends to it as its own user
    run = {"check": True, "capture_output": True}
    options = f"-p {port} -h 127.0.0.1 -k {base}" + (
        " -c fsync=off -c full_page_writes=off" if throwaway else ""
    )
    try:
        stop_postgres(base)
        new = not (data / "PG_VERSION").exists()
        if new:
            pwfile = base / "pwfile"
            pwfile.write_text(password + "\n")
            _give_to_postgres(pwfile)
            init = [initdb, "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={pwfile}"]
            subprocess.run([*as_postgres, *init, *(["--no-sync"] if throwaway else []), "-E", "UTF8"], **run)
            pwfile.unlink()
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-l", str(log_path), "-o", options, "-w", "start"], **run
        )
        if new:
            import psycopg

            admin = f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"CREATE ROLE jupyterhub LOGIN PASSWORD '{password}'")
                conn.execute("CREATE DATABASE jupyterhub OWNER jupyterhub")
        yield Postgres(f"postgresql://jupyterhub@127.0.0.1:{port}/jupyterhub", password, log_path)
    finally:
        stop_postgres(base)
        if throwaway:
            shutil.rmtree(base, ignore_errors=True)
