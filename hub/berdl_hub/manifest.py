"""Pure helpers that build the parts of the user pod the spawner adds.

Nothing here talks to Kubernetes or reads spawner state: every function takes plain values and returns
plain Kubernetes-JSON dicts (camelCase keys), so the pod shape can be tested without a hub.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import init_summary

HOME_VOLUME = "berdl-home"
INIT_TMP_VOLUME = "berdl-init-tmp"
INIT_CONTAINER_NAME = "berdl-init"

# A hostPath with DirectoryOrCreate is created by the kubelet as root:root 0755: the user cannot write
# it, so berdl-init has to start as root to fix the folder's owner, then drops to the user. These are
# the only capabilities it needs for that (chown the home folder, then setgid/setgroups/setuid).
ROOT_INIT_CAPABILITIES = ("CHOWN", "SETGID", "SETUID")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def favorites_root(root_dir: str, home: str) -> str:
    """The `root` JupyterLab's favorites extension shows an entry under, for a server root and a home.

    The extension keeps an entry only when its `root` equals, as a string, the root the server reports:
    `/` for root_dir `/`, `~/sub` for a root strictly below the home, otherwise the absolute path
    (the home itself included).
    """
    root = posixpath.normpath(root_dir) if root_dir else home
    home = posixpath.normpath(home)
    if root == "/":
        return "/"
    if root != home and root.startswith(home.rstrip("/") + "/"):
        return "~/" + posixpath.relpath(root, home)
    return root


def home_volume(
    kind: str, *, host_path: str = "", host_path_type: str = "DirectoryOrCreate", claim_name: str = ""
) -> dict[str, Any]:
    """The volume holding one user's home: a hostPath folder or a PersistentVolumeClaim."""
    if kind == "hostPath":
        if not posixpath.isabs(host_path):
            raise ValueError(f"home host path must be absolute, got {host_path!r}")
        return {"name": HOME_VOLUME, "hostPath": {"path": host_path, "type": host_path_type}}
    if kind == "pvc":
        if not claim_name:
            raise ValueError("home volume 'pvc' needs a claim name")
        return {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": claim_name}}
    raise ValueError(f"home volume type must be 'hostPath' or 'pvc', got {kind!r}")


def home_mount(mount_path: str, sub_path: str = "") -> dict[str, Any]:
    """The mount of the home volume; the notebook and the initContainer use this same dict."""
    if not posixpath.isabs(mount_path):
        raise ValueError(f"home mount path must be absolute, got {mount_path!r}")
    mount: dict[str, Any] = {"name": HOME_VOLUME, "mountPath": mount_path}
    if sub_path:
        mount["subPath"] = sub_path
    return mount


def extra_mounts(specs: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts for shared or admin folders, from the operator's short form.

    Each spec: `name` (a DNS label), `mount_path`, exactly one of `host_path` or `claim_name`,
    optional `read_only` (default true: shared data is read-only unless the operator says so),
    `sub_path` and `host_path_type` (default `Directory`: a shared folder must already exist).
    """
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    seen: set[str] = set()
    for spec in specs:
        unknown = set(spec) - {
            "name",
            "mount_path",
            "host_path",
            "claim_name",
            "read_only",
            "sub_path",
            "host_path_type",
        }
        if unknown:
            raise ValueError(f"mount {spec.get('name')!r}: unknown keys {sorted(unknown)}")
        name = str(spec.get("name", ""))
        if not _DNS_LABEL.match(name) or name in (HOME_VOLUME, INIT_TMP_VOLUME):
            raise ValueError(f"mount name {name!r} must be a DNS label and not a reserved name")
        if name in seen:
            raise ValueError(f"mount name {name!r} is used twice")
        seen.add(name)
        mount_path = str(spec.get("mount_path", ""))
        if not posixpath.isabs(mount_path):
            raise ValueError(f"mount {name!r}: mount_path must be absolute, got {mount_path!r}")
        if bool(spec.get("host_path")) == bool(spec.get("claim_name")):
            raise ValueError(f"mount {name!r}: give exactly one of host_path or claim_name")
        if spec.get("host_path"):
            source: dict[str, Any] = {
                "hostPath": {"path": spec["host_path"], "type": spec.get("host_path_type", "Directory")}
            }
        else:
            source = {"persistentVolumeClaim": {"claimName": spec["claim_name"]}}
        read_only = bool(spec.get("read_only", True))
        volumes.append({"name": name, **source})
        mount: dict[str, Any] = {"name": name, "mountPath": mount_path, "readOnly": read_only}
        if spec.get("sub_path"):
            mount["subPath"] = spec["sub_path"]
        mounts.append(mount)
    return volumes, mounts


def init_security_context(uid: int | None, gid: int | None, as_root: bool) -> dict[str, Any]:
    """Least privilege for berdl-init: the user's ids (the image's user when None), or root with just
    what fixing the home needs."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if as_root:
        context.update(
            runAsUser=0,
            runAsGroup=0,
            runAsNonRoot=False,
            capabilities={"drop": ["ALL"], "add": list(ROOT_INIT_CAPABILITIES)},
        )
        return context
    if uid is not None:
        context["runAsUser"] = uid
    if gid is not None:
        context["runAsGroup"] = gid
    context.update(runAsNonRoot=True, capabilities={"drop": ["ALL"]})
    return context


def notebook_security_context(uid: int | None) -> dict[str, Any]:
    """BERDL's defaults for the notebook container: the runtime's seccomp profile, no capabilities, no
    privilege escalation, and a non-root check when the uid is known not to be root."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if uid is not None and uid != 0:
        context["runAsNonRoot"] = True
    return context


# Seconds of berdl-init's time budget kept for all but its package restore: the lock, the first
# virtualenv build (about 0.3 s on a local disk, bench/) and its copy into a home on a slow NFS server.
INIT_BUILD_ALLOWANCE = 30.0


# The longest restore berdl-init accepts (BERDL_VENV_RESTORE_TIMEOUT; berdl_init.settings'
# MAX_VENV_RESTORE_TIMEOUT, which the hub does not import: tests/hub check that they agree); a longer one
# would be refused with exit 2 at every start.
MAX_RESTORE_TIMEOUT = 3600.0


def restore_timeout(init_time_budget: float) -> float:
    """The bound of berdl-init's package restore that keeps the whole run within `init_time_budget`."""
    return min(max(init_time_budget - INIT_BUILD_ALLOWANCE, 0.0), MAX_RESTORE_TIMEOUT)


def init_env(
    *,
    home: str,
    user: str,
    uid: int | None,
    gid: int | None,
    favorites_root: str,
    favorites: Sequence[Mapping[str, str]] | None = None,
    template_vars: Mapping[str, Any] | None = None,
    restore_timeout: float | None = None,
    extra: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """The `BERDL_*` settings berdl-init reads, for one user. Never any hub secret.

    A uid or gid of None is left out: berdl-init then takes the home's owner. `restore_timeout` bounds
    the package restore after an image upgrade (0: no restore), unless `extra` (the operator's) sets it.
    """
    env: dict[str, str] = {}
    if restore_timeout is not None:
        if restore_timeout > 0:
            env["BERDL_VENV_RESTORE_TIMEOUT"] = f"{restore_timeout:g}"
        else:
            env["BERDL_VENV_RESTORE"] = "false"
    env.update(extra or {})
    env.update(BERDL_HOME=home, BERDL_USER=user, BERDL_FAVORITES_ROOT=favorites_root)
    for name, value in (("BERDL_UID", uid), ("BERDL_GID", gid)):
        if value is None:
            env.pop(name, None)  # not an operator's stand-in either: "the home's owner" is the point
        else:
            env[name] = str(value)
    if favorites:
        env["BERDL_FAVORITES"] = json.dumps([dict(f) for f in favorites])
    if template_vars:
        env["BERDL_TEMPLATE_VARS"] = json.dumps(dict(template_vars), sort_keys=True)
    return [{"name": key, "value": value} for key, value in sorted(env.items())]


def init_container(
    *,
    image: str,
    pull_policy: str | None,
    home_mount: Mapping[str, Any],
    env: list[dict[str, str]],
    security_context: Mapping[str, Any],
    resources: Mapping[str, Any],
    args: Sequence[str] = ("--json",),
    folder_mounts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The initContainer running the image's `berdl-init` entrypoint on the user's home.

    `folder_mounts` (the pod's shared and admin folders) are mounted read-only: berdl-init only checks
    that a configured favorite's folder exists, and skips one it cannot see.
    """
    container: dict[str, Any] = {
        "name": INIT_CONTAINER_NAME,
        "image": image,
        "args": list(args),
        "env": env,
        "volumeMounts": [
            dict(home_mount),
            *({**m, "readOnly": True} for m in folder_mounts),
            # virtualenv writes temporary files while it works; the root filesystem is read-only.
            {"name": INIT_TMP_VOLUME, "mountPath": "/tmp"},
        ],
        "securityContext": dict(security_context),
        "resources": dict(resources),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if pull_policy:
        container["imagePullPolicy"] = pull_policy
    return container


def init_tmp_volume(size_limit: str = "1Gi") -> dict[str, Any]:
    """The scratch `/tmp` of the initContainer, gone with the pod."""
    return {"name": INIT_TMP_VOLUME, "emptyDir": {"sizeLimit": size_limit}}


# What berdl-init's exit statuses mean to the user waiting for their server (README.md: exit status).
INIT_EXIT_MEANINGS = {
    2: "its settings are invalid: the hub's spawner configuration needs fixing by an administrator",
    3: "your home folder cannot be used (missing and not creatable, a symlink, or not writable)",
}


def init_failure(pod: Mapping[str, Any] | None) -> str | None:
    """A message when the pod's berdl-init container has exited with an error, else None: the one line
    berdl-init printed about it (the kubelet's termination message, see `printed_reason`), its exit
    status and what that means.

    With restartPolicy OnFailure the kubelet retries a failed initContainer forever: without this
    check a spawn would wait its whole start_timeout and end with a message that says nothing.
    """
    for status in ((pod or {}).get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != INIT_CONTAINER_NAME:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated") or {}
            code = terminated.get("exitCode")
            if code:
                meaning = INIT_EXIT_MEANINGS.get(code, "it failed")
                reason = printed_reason(terminated.get("message") or "")
                said = f": {reason}" if reason else ""
                status_note = f"berdl-init exited with status {code}: {meaning}"
                return f"Your home could not be prepared{said} ({status_note})."
    return None


# berdl-init's own line about why it failed starts with this (berdl_init.cli); --json also prints
# the report object on stdout.
_INIT_ERROR_PREFIX = "berdl-init: "
_REASON_MAX = 500


def printed_reason(message: str) -> str:
    """berdl-init's one line about its failure, from a container's termination message.

    berdl-init writes its summary there, with that line as `error` (berdl_init.termination). For a failed
    run that wrote none (an older init image, a crash), terminationMessagePolicy FallbackToLogsOnError has
    the kubelet put the tail of its log there (at most 80 lines and 2 KiB): berdl-init's last line
    starting with `berdl-init: ` is the reason; without one (a crash before berdl-init ran), the last
    line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    own = [line.removeprefix(_INIT_ERROR_PREFIX) for line in lines if line.startswith(_INIT_ERROR_PREFIX)]
    reason = init_summary.error(message) or (own or lines or [""])[-1]
    return reason if len(reason) <= _REASON_MAX else reason[: _REASON_MAX - 3] + "..."
