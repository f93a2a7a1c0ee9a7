"""A node for the Kubernetes API stand-in: plays each pod of a namespace with `podman kube play`.

It does what a kubelet does for the pods the hub's spawner posts, with the real images:

- a new pod gets its own loopback address; the pod is changed only as `localpod.for_this_machine`
  lists; the Secrets its containers read are fetched from the API and made podman secrets first;
- its real state goes back into the API as a kubelet reports it: phase, init container and container
  statuses with exit codes, times (whole seconds, UTC) and the termination message: what the container
  wrote to its termination-message file (a file of the node's, 0666, mounted at its
  terminationMessagePath, as the kubelet makes one), else, for a failed container whose
  terminationMessagePolicy is FallbackToLogsOnError, the tail of its log; readiness, `podIP` (from the
  start);
- a pod deleted in the API is removed from podman with its podman secrets, after its containers' logs
  are saved; the Secrets it owned are deleted (the garbage collection kmock does not do, `kube_gc`).

Each initContainer's log is kept, the way `kubectl logs -c` reads it after the container ran, and every
play's is kept: `log_dir/POD/CONTAINER.N.log` (and `.N.stderr.log`), N counting the pod's plays, so
that the log of the start that did the work is still there after the next start. Each container's log
is added to `log_dir/POD/CONTAINER.log` when the pod is removed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import random
import re
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

from localhub import kube_gc, localpod
from localhub.leftovers import Leftovers
from localhub.podman_async import AsyncPodman
from localhub.standins.kube import Kubelet

log = logging.getLogger("berdl.localhub.node")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def loopback_addresses(port: int) -> Iterator[str]:
    """127.X.Y.Z addresses, in a block of 127.0.0.0/8 chosen at random (so that two stacks on one
    machine rarely meet), skipping any where something already listens on `port`."""
    block = ipaddress.ip_network(f"127.{random.randint(16, 250)}.0.0/16")
    for address in block.hosts():
        with socket.socket() as probe:
            try:
                probe.bind((str(address), port))
            except OSError:
                continue
        yield str(address)


@dataclass
class PlayedPod:
    name: str
    uid: str
    ip: str
    manifest: Path
    containers: list[str]
    init_containers: list[str]
    secrets: set[str]
    #: The containers with terminationMessagePolicy FallbackToLogsOnError.
    log_fallback: set[str] = field(default_factory=set)
    status: dict[str, Any] = field(default_factory=dict)
    inspected_at: float = 0.0
    number: int = 0  # which play of a pod of this name this is (1, 2, ...)
    #: The node's folder of the containers' termination-message files.
    termination_dir: Path | None = None

    def termination_file(self, container: str) -> Path:
        """The node's file that is `container`'s termination-message file (localpod, change 8)."""
        assert self.termination_dir is not None
        return self.termination_dir / f"{container}.termination-log"

    def make_termination_files(self) -> dict[str, str]:
        """An empty file for each container, mode 0666 as the kubelet makes them (a container may run as
        any user); by container name."""
        assert self.termination_dir is not None
        self.termination_dir.mkdir(mode=0o755, exist_ok=True)
        files = {}
        for container in [*self.init_containers, *self.containers]:
            path = self.termination_file(container)
            path.write_bytes(b"")
            path.chmod(0o666)
            files[container] = str(path)
        return files


# A kubelet's termination message from the log (terminationMessagePolicy FallbackToLogsOnError, for a
# container that failed without writing its message file): the log's last 80 lines, both streams in the
# order written, of which the last 2048 bytes (MaxContainerTerminationMessageLogLines and ...LogLength).
FALLBACK_MESSAGE_LINES = 80
FALLBACK_MESSAGE_BYTES = 2048


def log_tail(log_path: Path) -> str:
    """The termination message a kubelet reads from a container's log in the CRI format that podman's
    k8s-file driver also writes: `TIME STREAM P|F TEXT`, P for a partial line continued in the next."""
    lines, partial = [], ""
    for record in log_path.read_text(errors="replace").splitlines():
        parts = record.split(" ", 3)
        if len(parts) < 3:
            continue
        text = parts[3] if len(parts) == 4 else ""
        if parts[2] == "P":
            partial += text
            continue
        lines.append(partial + text + "\n")
        partial = ""
    tail = "".join(lines[-FALLBACK_MESSAGE_LINES:]).encode()
    return tail[-FALLBACK_MESSAGE_BYTES:].decode(errors="replace")


#: What a kubelet keeps of a termination-message file (MaxContainerTerminationMessageLength).
MESSAGE_BYTES = 4096

_PODMAN_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$")


def kubelet_time(podman_time: str) -> str:
    """A time as the kubelet reports it (RFC 3339, UTC, whole seconds) from podman's (nanoseconds, the
    host's offset, or Go's "2006-01-02 15:04:05.999 -0700 MST" in events); "" when it cannot be read."""
    text = podman_time.strip()
    if " " in text:  # Go's default form, in `podman events`
        date, clock, offset, *_ = [*text.split(" "), "", ""][:4]
        text = f"{date}T{clock}{offset[:3]}:{offset[3:]}" if offset else ""
    match = _PODMAN_TIME.match(text)
    if not match:
        return ""
    moment = datetime.fromisoformat(match.group(1) + match.group(2).replace("Z", "+00:00"))
    if moment.year < 1970:  # podman's zero time: not started or not finished
        return ""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def termination_message(path: Path) -> str:
    """What a container left in its termination-message file, as much as a kubelet keeps."""
    try:
        with open(path, "rb") as file:
            return file.read(MESSAGE_BYTES).decode(errors="replace")
    except OSError:
        return ""


def _container_status(name: str, inspected: dict[str, Any] | None, *, init: bool) -> dict[str, Any]:
    """One entry of containerStatuses / initContainerStatuses, from `podman container inspect`."""
    if inspected is None:
        return {"name": name, "ready": False, "restartCount": 0, "image": "", "imageID": "",
                "state": {"waiting": {"reason": "PodInitializing"}}}  # fmt: skip
    state = inspected["State"]
    entry: dict[str, Any] = {
        "name": name,
        "image": inspected.get("ImageName", ""),
        "imageID": inspected.get("Image", ""),
        "containerID": f"podman://{inspected['Id']}",
        "restartCount": inspected.get("RestartCount", 0),
    }
    if state.get("Running"):
        started = kubelet_time(state["StartedAt"])
        entry.update(ready=not init, started=True, state={"running": {"startedAt": started}})
    elif state.get("Status") in ("exited", "stopped"):
        code = int(state.get("ExitCode", 0))
        reason = "Completed" if code == 0 else "Error"
        terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": kubelet_time(state.get("StartedAt", "")),
            "finishedAt": kubelet_time(state.get("FinishedAt", "")),
        }
        entry.update(ready=init and code == 0, started=False, state={"terminated": terminated})
    else:
        entry.update(ready=False, started=False, state={"waiting": {"reason": "ContainerCreating"}})
    return entry


class Node(Kubelet):
    """The kubelet that plays the pods of `namespace` in the API at `api_url` with podman; see the module's
    description."""

    def __init__(
        self,
        api_url: str,
        namespace: str,
        *,
        host_root: Path,
        images: Mapping[str, str],
        log_dir: Path,
        podman: AsyncPodman | None = None,
        leftovers: Leftovers | None = None,
        port: int = 8888,
        poll_seconds: float = 0.25,
        refresh_seconds: float = 2.0,
    ) -> None:
        super().__init__(api_url, namespace, poll_seconds=poll_seconds)
        self.host_root = host_root
        self.images = dict(images)
        self.log_dir = log_dir
        self.podman = podman or AsyncPodman()
        self.leftovers = leftovers  # where each pod is written down while podman has it
        self.refresh_seconds = refresh_seconds  # how often running pods are inspected (podman is slow)
        self.addresses = loopback_addresses(port)
        self.played: dict[str, PlayedPod] = {}
        self.plays = 0
        self.plays_of: Counter[str] = Counter()  # by pod name
        self._work: dict[str, asyncio.Task[None]] = {}  # per pod name: its play or removal, in order
        self._folder = Path(tempfile.mkdtemp(prefix="berdl-node-"))
        self._folder.chmod(0o700)  # secrets pass through here

    def init_logs(self, pod: str, container: str, stream: str = "stdout") -> list[str]:
        """What `container`, an initContainer of `pod`, printed on `stream` (stdout, stderr) at each play
        of the pod, oldest first."""
        suffix = ".log" if stream == "stdout" else f".{stream}.log"
        plays = sorted(
            (int(path.name.removeprefix(f"{container}.").removesuffix(suffix)), path)
            for path in (self.log_dir / pod).glob(f"{container}.*{suffix}")
            if path.name.removeprefix(f"{container}.").removesuffix(suffix).isdigit()
        )
        return [path.read_text() for _, path in plays]

    def init_log(self, pod: str, container: str, stream: str = "stdout") -> str:
        """What `container`, an initContainer of `pod`, printed on `stream` at the pod's last play."""
        return self.init_logs(pod, container, stream)[-1]

    # --- the loop (Kubelet's, with this round) -------------------------------------------------------
    async def _round(self, session: aiohttp.ClientSession) -> None:
        listed = {pod["metadata"]["name"]: pod for pod in await self._pods(session)}
        for name, played in list(self.played.items()):
            pod = listed.get(name)
            if (
                pod is None
                or pod["metadata"].get("uid") != played.uid
                or pod["metadata"].get("deletionTimestamp")
            ):
                self._then(name, self._remove(session, played))
        for name, pod in listed.items():
            busy = name in self._work and not self._work[name].done()
            if name not in self.played and not busy and not pod["metadata"].get("deletionTimestamp"):
                status = pod.get("status") or {}
                if status.get("phase") in (None, "Pending") and not status.get("podIP"):
                    self._then(name, self._play(session, pod))
        now = time.monotonic()
        for played in list(self.played.values()):
            busy = played.name in self._work and not self._work[played.name].done()
            if not busy and now - played.inspected_at >= self.refresh_seconds:
                self._then(played.name, self._refresh(session, played))

    def _then(self, name: str, step: Any) -> None:
        """Run `step` after what is already under way for this pod (a removal before a new play)."""
        before = self._work.get(name)

        async def chained() -> None:
            if before is not None:
                with contextlib.suppress(Exception):
                    await before
            try:
                await step
            except Exception:
                log.exception("node: pod %s", name)

        self._work[name] = asyncio.create_task(chained())

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        for task in self._work.values():
            task.cancel()
        # Nothing of this node outlives it: its pods and their podman secrets go.
        for played in list(self.played.values()):
            await self._remove_from_podman(played)
        self.played.clear()

    # --- status --------------------------------------------------------------------------------------
    async def _last_exit(self, container_id: str, since: str) -> dict[str, Any] | None:
        """How the container's previous run ended, from podman's events: podman restarts a failed
        container at once (restartPolicy OnFailure), where a kubelet waits (CrashLoopBackOff) and keeps
        that run's end as `lastState` meanwhile."""
        result = await self.podman(
            "events", "--stream=false", "--since", since, "--format", "json",
            "--filter", f"container={container_id}", "--filter", "event=died",
        )  # fmt: skip
        died = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not died:
            return None
        code = int(died[-1].get("ContainerExitCode", 0))
        finished = kubelet_time(str(died[-1]["Time"]))
        return {"exitCode": code, "reason": "Error" if code else "Completed", "finishedAt": finished}

    async def _status_of(self, played: PlayedPod, container: str, *, init: bool) -> dict[str, Any]:
        inspected = await self.podman.inspect(f"{played.name}-{container}")
        status = _container_status(container, inspected, init=init)
        ended = status["state"].get("terminated")
        if ended is None and inspected and inspected.get("RestartCount"):
            before = await self._last_exit(inspected["Id"], played.status.get("startTime", _now()))
            if before:
                status["lastState"] = {"terminated": before}
        for terminated in (ended, status.get("lastState", {}).get("terminated")):
            if not terminated:
                continue
            message = termination_message(played.termination_file(container))
            if message:
                terminated["message"] = message
            elif terminated["exitCode"] and container in played.log_fallback and inspected:
                with contextlib.suppress(OSError, KeyError):  # podman 4.3 keeps the path under HostConfig
                    terminated["message"] = log_tail(Path(inspected["HostConfig"]["LogConfig"]["Path"]))
        return status

    async def _observed(self, played: PlayedPod) -> dict[str, Any]:
        inits = [await self._status_of(played, c, init=True) for c in played.init_containers]
        mains = [await self._status_of(played, c, init=False) for c in played.containers]
        running = [m for m in mains if "running" in m["state"]]
        ended = [m for m in mains if "terminated" in m["state"]]
        failed_init = [i for i in inits if i["state"].get("terminated", {}).get("exitCode")]
        if failed_init:
            phase = "Pending"
            for status in failed_init:  # as with restartPolicy OnFailure: the kubelet would retry it
                status["lastState"], status["state"] = (
                    status["state"],
                    {"waiting": {"reason": "CrashLoopBackOff"}},
                )
        elif mains and len(ended) == len(mains):
            phase = "Succeeded" if all(m["state"]["terminated"]["exitCode"] == 0 for m in ended) else "Failed"
        elif running:
            phase = "Running"
        else:
            phase = "Pending"
        ready = bool(mains) and all(m["ready"] for m in mains)
        return {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": played.ip,
            "podIPs": [{"ip": played.ip}],
            "startTime": played.status.get("startTime", _now()),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "initContainerStatuses": inits,
            "containerStatuses": mains,
        }

    async def _refresh(self, session: aiohttp.ClientSession, played: PlayedPod) -> None:
        status = await self._observed(played)
        played.inspected_at = time.monotonic()
        if status != played.status:
            played.status = status
            await self._report(session, played.name, status, played.uid)

    # --- play ----------------------------------------------------------------------------------------
    async def _podman_secret(self, session: aiohttp.ClientSession, name: str) -> bool:
        """The Secret `name` of the API as a podman secret: a flat JSON object of base64 values, the
        form podman 4.3 reads. False when the API has no such Secret (yet)."""
        async with session.get(
            f"{self.api_url}/api/v1/namespaces/{self.namespace}/secrets/{name}"
        ) as response:
            if response.status != 200:
                return False
            secret = await response.json()
        data = dict(secret.get("data") or {})
        for key, value in (secret.get("stringData") or {}).items():  # what an API server would convert
            data[key] = base64.b64encode(value.encode()).decode()
        path = self._folder / f"{name}.json"
        path.touch(mode=0o600)
        try:
            path.write_text(json.dumps(data))
            await self.podman("secret", "rm", name)
            result = await self.podman("secret", "create", name, str(path))
        finally:
            path.unlink()
        if result.returncode != 0:
            raise RuntimeError(result.describe())
        return True

    async def _play(self, session: aiohttp.ClientSession, pod: dict[str, Any]) -> None:
        name, spec = pod["metadata"]["name"], pod["spec"]
        ip = next(self.addresses)
        played = PlayedPod(
            name=name,
            uid=pod["metadata"]["uid"],
            ip=ip,
            manifest=self._folder / f"{name}.json",
            containers=[c["name"] for c in spec["containers"]],
            init_containers=[c["name"] for c in spec.get("initContainers", [])],
            secrets=localpod.secret_refs(pod),
            log_fallback={
                c["name"]
                for c in [*spec.get("initContainers", []), *spec["containers"]]
                if c.get("terminationMessagePolicy") == "FallbackToLogsOnError"
            },
        )
        played.termination_dir = self._folder / f"{name}.termination"
        local = localpod.for_this_machine(
            pod,
            pod_ip=ip,
            host_root=str(self.host_root),
            images=self.images,
            termination_files=played.make_termination_files(),
        )
        played.manifest.write_text(json.dumps(local))
        self.played[name] = played
        if self.leftovers is not None:  # before its podman secrets exist
            self.leftovers.pod(name, played.secrets)
        # A kubelet reports the pod's address once its sandbox exists, before the init containers run.
        played.status = {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": _now(),
        }
        await self._report(session, name, played.status, played.uid)
        # The kubelet retries a container whose Secret is not there yet: wait for the spawner to make it.
        missing = set(played.secrets)
        while missing:
            missing = {s for s in missing if not await self._podman_secret(session, s)}
            if missing:
                await asyncio.sleep(self.poll_seconds)
        await self.podman("pod", "rm", "--force", "--ignore", name)  # what a killed earlier run left
        self.plays += 1
        self.plays_of[name] += 1
        played.number = self.plays_of[name]
        result = await self.podman(
            "kube", "play", "--log-driver", "k8s-file", str(played.manifest), timeout=900
        )
        if result.returncode != 0:
            log.warning("node: %s", result.describe())
        await self._save_init_logs(played)
        await self._refresh(session, played)

    async def _save_init_logs(self, played: PlayedPod) -> None:
        folder = self.log_dir / played.name
        folder.mkdir(parents=True, exist_ok=True)
        for container in played.init_containers:
            result = await self.podman("logs", f"{played.name}-{container}")
            (folder / f"{container}.{played.number}.log").write_text(result.stdout)
            (folder / f"{container}.{played.number}.stderr.log").write_text(result.stderr)

    # --- removal -------------------------------------------------------------------------------------
    async def _remove_from_podman(self, played: PlayedPod) -> None:
        folder = self.log_dir / played.name
        folder.mkdir(parents=True, exist_ok=True)
        for container in played.containers:
            result = await self.podman("logs", f"{played.name}-{container}")
            with open(folder / f"{container}.log", "a") as saved:
                saved.write(result.stdout + result.stderr)
        await self.podman("kube", "down", str(played.manifest), timeout=300)
        await self.podman("pod", "rm", "--force", "--ignore", played.name)
        for secret in played.secrets:
            await self.podman("secret", "rm", secret)
        played.manifest.unlink(missing_ok=True)
        if played.termination_dir is not None:
            shutil.rmtree(played.termination_dir, ignore_errors=True)
        if self.leftovers is not None:
            self.leftovers.pod_removed(played.name)

    async def _remove(self, session: aiohttp.ClientSession, played: PlayedPod) -> None:
        if self.played.get(played.name) is not played:
            return  # removed already
        await self._remove_from_podman(played)
        del self.played[played.name]
        deleted = await kube_gc.delete_dependents(session, self.api_url, self.namespace, played.uid)
        log.info("node: removed pod %s and its dependents %s", played.name, deleted)
