"""The BERDL parts of a user's pod, added to the pod KubeSpawner built.

KubeSpawner builds the pod as kubernetes models, after its own template expansion; BERDL's parts are
added to that pod afterwards, so JSON values with literal braces (favorites, template variables) reach
berdl-init unchanged. The parts themselves are plain Kubernetes-JSON dicts from `manifest`; this module
only checks that they fit beside the operator's own parts and puts them in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client.models import V1Container, V1EnvVar, V1Volume, V1VolumeMount

from . import manifest, spawner_settings, upstream


@dataclass(frozen=True)
class PodParts:
    """What BERDL adds to a user's pod."""

    volumes: list[dict[str, Any]]  # the home, the shared and admin folders, the initContainer's /tmp
    mounts: list[dict[str, Any]]  # the notebook's: the home first, then the folders
    init_container: dict[str, Any]  # berdl-init, which runs before any other initContainer
    env: list[dict[str, Any]]  # the notebook's variables that are references (the Secret, the pod's IP)
    security_context: dict[str, Any]  # the notebook's defaults; KubeSpawner's own settings win


class PodSettings(Protocol):
    """The spawner's settings that shape BERDL's parts (BERDLSpawner's traits of the same names)."""

    init_image: str
    init_image_pull_policy: str | None
    init_args: list[str]
    init_environment: dict[str, str]
    init_favorites: list[dict[str, Any]]
    init_template_vars: dict[str, Any]
    init_resources: dict[str, Any]
    init_tmp_size_limit: str
    init_runs_as_root: bool | None
    init_time_budget: float
    home_volume_type: str
    home_host_path: str
    home_host_path_type: str
    home_claim_name: str
    home_sub_path: str
    home_mount_path: str
    shared_mounts: list[dict[str, Any]]
    admin_mounts: list[dict[str, Any]]
    working_dir: str


@dataclass(frozen=True)
class ForServer:
    """What BERDL's parts need of one server beside the settings."""

    user: str
    admin: bool
    uid: int | None
    gid: int | None
    expand: Callable[[str], str]  # KubeSpawner's template expansion for this server
    notebook_dir: str  # the server's root, expanded ("" when notebook_dir is not set)
    env: list[dict[str, Any]]  # the notebook's reference variables


async def resolved_id(value: Any, spawner: Any) -> int | None:
    """A uid or gid setting's value: KubeSpawner allows a callable of the spawner (`uid`, `gid`)."""
    value = await maybe_future(value(spawner)) if callable(value) else value
    return None if value is None else int(value)


def home_mount_path(settings: PodSettings, expand: Callable[[str], str]) -> str:
    return expand(settings.home_mount_path)


def build(settings: PodSettings, server: ForServer) -> PodParts:
    """Every part BERDL adds to the pod of `server`."""
    expand = server.expand
    home_mount = manifest.home_mount(
        home_mount_path(settings, expand), expand(settings.home_sub_path) if settings.home_sub_path else ""
    )
    home_volume = manifest.home_volume(
        settings.home_volume_type,
        host_path=expand(settings.home_host_path),
        host_path_type=settings.home_host_path_type,
        claim_name=expand(settings.home_claim_name) if settings.home_claim_name else "",
    )
    folders = [settings.shared_mounts, settings.admin_mounts if server.admin else []]
    volumes, mounts = volumes_and_mounts(home_volume, home_mount, folders, settings.init_tmp_size_limit)
    return PodParts(
        volumes=volumes,
        mounts=mounts,
        init_container=init_container(settings, server, home_mount, mounts[1:]),
        env=server.env,
        security_context=manifest.notebook_security_context(server.uid),
    )


def init_container(
    settings: PodSettings, server: ForServer, home_mount: dict[str, Any], folder_mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The berdl-init initContainer of `server`: its settings (`BERDL_*`), its mounts, its privileges."""
    if not settings.init_image:
        raise ValueError("BERDLSpawner.init_image is not set")
    as_root = spawner_settings.init_as_root(
        settings.init_runs_as_root, settings.home_volume_type, settings.home_host_path_type
    )
    refused = spawner_settings.uid_problem(server.uid, as_root)
    if refused:
        raise ValueError(refused)
    home = home_mount["mountPath"]
    root_dir = (
        server.notebook_dir or settings.working_dir or home
    )  # JUPYTERHUB_ROOT_DIR, as JupyterHub sets it
    env = manifest.init_env(
        home=home,
        user=server.user,
        uid=server.uid,
        gid=server.gid,
        favorites_root=manifest.favorites_root(root_dir, home),
        favorites=[{**f, "path": server.expand(str(f.get("path", "")))} for f in settings.init_favorites],
        template_vars=settings.init_template_vars,
        restore_timeout=manifest.restore_timeout(settings.init_time_budget),
        extra=settings.init_environment,
    )
    return manifest.init_container(
        image=settings.init_image,
        pull_policy=settings.init_image_pull_policy,
        home_mount=home_mount,
        env=env,
        security_context=manifest.init_security_context(server.uid, server.gid, as_root),
        # the pod's own dicts, not the setting's: a modify_pod_hook may change them
        resources={k: dict(v) if isinstance(v, Mapping) else v for k, v in settings.init_resources.items()},
        args=settings.init_args,
        folder_mounts=folder_mounts,
    )


def volumes_and_mounts(
    home_volume: dict[str, Any],
    home_mount: dict[str, Any],
    folder_specs: Sequence[Sequence[Mapping[str, Any]]],
    init_tmp_size_limit: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's BERDL volumes and the notebook's mounts of them, from the operator's folder settings."""
    volumes, mounts = [home_volume], [home_mount]
    for specs in folder_specs:
        extra_volumes, extra_mounts = manifest.extra_mounts(specs)
        volumes += extra_volumes
        mounts += extra_mounts
    volumes.append(manifest.init_tmp_volume(init_tmp_size_limit))
    return volumes, mounts


def refuse_reserved_init_container(init_containers: Any) -> None:
    """An operator's initContainer may not take berdl-init's name (KubeSpawner.init_containers)."""
    if isinstance(init_containers, Mapping):
        init_containers = list(init_containers.values())
    if any(_name_of(c) == manifest.INIT_CONTAINER_NAME for c in init_containers):
        raise ValueError(
            f"KubeSpawner.init_containers: the name {manifest.INIT_CONTAINER_NAME!r} is BERDL's own"
        )


def add(pod: Any, parts: PodParts) -> None:
    """Put BERDL's parts into the pod KubeSpawner built."""
    spec = pod.spec
    clash = {str(_name_of(v)) for v in spec.volumes or []} & {v["name"] for v in parts.volumes}
    if clash:
        raise ValueError(f"KubeSpawner.volumes: the names {sorted(clash)} are BERDL's own")
    spec.volumes = list(spec.volumes or []) + [_k8s_model(V1Volume, v) for v in parts.volumes]

    notebook = upstream.notebook_container(spec.containers)
    notebook.env = list(notebook.env or []) + [_k8s_model(V1EnvVar, v) for v in parts.env]
    notebook.volume_mounts = list(notebook.volume_mounts or []) + [
        _k8s_model(V1VolumeMount, m) for m in parts.mounts
    ]
    notebook.security_context = parts.security_context | dict(notebook.security_context or {})
    # The kubelet gives a pod a few variables for every Service of its namespace: with a Service per
    # server, each notebook would hold every other user's name. Off, unless extra_pod_config says otherwise.
    if spec.enable_service_links is None:
        spec.enable_service_links = False
    # berdl-init first: other initContainers may expect a prepared home.
    spec.init_containers = [_k8s_model(V1Container, parts.init_container), *(spec.init_containers or [])]


def set_variable(pod: Any, name: str, value: str) -> None:
    """Set the notebook's variable `name` to `value`, in place of an entry of that name if any."""
    set_variables(pod, {name: value})


def set_variables(pod: Any, values: Mapping[str, str]) -> None:
    """Set the notebook's variables `values`, each in place of an entry of its name if any (one pass over
    the container's environment)."""
    notebook = upstream.notebook_container(pod.spec.containers)
    left = dict(values)
    for variable in notebook.env or []:
        if variable.name in left:
            variable.value, variable.value_from = left.pop(variable.name), None
    notebook.env = [
        *(notebook.env or []),
        *(V1EnvVar(name=name, value=value) for name, value in left.items()),
    ]


@functools.cache
def _attribute_names(model_type: type) -> dict[str, str]:
    """Kubernetes-JSON field name -> attribute name of a kubernetes model, computed once per type."""
    return {field: attribute for attribute, field in model_type.attribute_map.items()}  # type: ignore[attr-defined]


def _k8s_model(model_type: type, data: Mapping[str, Any]) -> Any:
    """kubespawner's get_k8s_model (top-level keys mapped, nested values left as dicts) without its deep
    copy of the whole dict, for dicts built afresh for each pod: that copy was most of the time BERDL
    added to get_pod_manifest()."""
    names = _attribute_names(model_type)
    return model_type(**{names.get(key, key): value for key, value in data.items()})


def _name_of(item: Any) -> str | None:
    """The name of a container or volume, given as a Kubernetes model or as a dict."""
    return item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)
