"""BERDLSpawner: KubeSpawner plus what BERDL needs per user, each part in a module of its own.

1. the berdl-init initContainer, added to each pod manifest as it is built (never stored in
   `self.init_containers`, so a second spawn cannot add a second one) (`manifest`);
2. an explicit per-user environment (never the hub's whole environment); the user's credentials only
   in a Secret per server, owned by the pod, read through `secretKeyRef` (`credentials`);
3. the home volume, shared folders, admins' extra mounts and admins' resources (`manifest`);
4. the user's one Spark cluster, shared by their servers, created before the first server's pod and
   deleted when the last one stops (`user_cluster`, `services`), and the user's MinIO credentials;
5. settings checked together when the hub loads them (`spawner_settings`).

Everything static (packages, Jupyter settings, dotfile templates) lives in the images.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client.models import V1Container, V1EnvVar, V1Volume, V1VolumeMount
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, default, validate

from . import credentials, manifest, spawner_settings, user_cluster
from .services import (
    Bounds,
    GovernanceClient,
    MinioCredentials,
    ServiceError,
    SparkCluster,
    SparkClusterManager,
)
from .spawner_settings import SpawnerConfigError  # noqa: F401  (what check_config raises)
from .user_cluster import ClusterShare

# Hub variables that must never reach a user pod, even when an operator lists them to forward.
HUB_SECRET_NAMES = frozenset(
    {
        "JUPYTERHUB_COOKIE_SECRET",
        "JPY_COOKIE_SECRET",
        "JUPYTERHUB_CRYPT_KEY",
        "CONFIGPROXY_AUTH_TOKEN",
        "PGPASSWORD",
        "JUPYTERHUB_DB_URL",
    }
)


class _NoBodies(logging.Filter):
    """Drop kubernetes_asyncio's debug dumps of API bodies: a credentials Secret's body holds the user's
    tokens (base64 is no protection)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("response body", "request body"))


logging.getLogger("kubernetes_asyncio.client.rest").addFilter(_NoBodies())

DEFAULT_UID = 1000  # the docker-stacks user (jovyan); berdl-init gives the home to it

_ADMIN_RESOURCE_KEYS = frozenset({"cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee"})


@functools.cache
def _attribute_names(model_type: type) -> dict[str, str]:
    """Kubernetes-JSON field name -> attribute name of a kubernetes model, computed once per type."""
    return {field: attribute for attribute, field in model_type.attribute_map.items()}


def _k8s_model(model_type: type, data: Mapping[str, Any]) -> Any:
    """kubespawner's get_k8s_model (top-level keys mapped, nested values left as dicts) without its deep
    copy of the whole dict, for dicts built afresh for each pod: that copy was most of the time BERDL
    added to get_pod_manifest()."""
    names = _attribute_names(model_type)
    return model_type(**{names.get(key, key): value for key, value in data.items()})


def _name_of(item: Any) -> str | None:
    """The name of a container or volume, given as a Kubernetes model or as a dict."""
    return item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)


class SpawnRefused(web.HTTPError):
    """A spawn stopped on purpose; JupyterHub shows `jupyterhub_message` to the user, without a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(503, log_message=message.replace("%", "%%"))
        self.jupyterhub_message = message


class BERDLSpawner(KubeSpawner):
    """KubeSpawner for BERDL: home setup by an initContainer, a Spark cluster and MinIO keys per user."""

    # --- the initContainer ---------------------------------------------------------------------------
    init_image = Unicode(
        "",
        config=True,
        help="Image of the berdl-init initContainer (its entrypoint is `berdl-init`). Required.",
    )
    init_image_pull_policy = Unicode(
        None,
        allow_none=True,
        config=True,
        help="imagePullPolicy of the initContainer; unset lets Kubernetes choose.",
    )
    init_args = List(
        Unicode(),
        default_value=["--json"],
        config=True,
        help="Arguments to berdl-init; `--json` prints one report object that `kubectl logs` shows.",
    )
    init_environment = Dict(
        value_trait=Unicode(),
        config=True,
        help="""Extra environment of the initContainer (e.g. BERDL_STEPS, BERDL_VENV_PYTHON).

        Values are literal: no `{username}` expansion. The per-user BERDL_HOME, BERDL_USER, BERDL_UID,
        BERDL_GID and BERDL_FAVORITES_ROOT are always set by the spawner and win over these. A
        BERDL_VENV_RESTORE_TIMEOUT here may only shorten the restore init_time_budget allows; the hub
        refuses a longer one when it loads its configuration.""",
    )
    init_favorites = List(
        Dict(),
        config=True,
        help="""JupyterLab favorites berdl-init adds, as [{"path": ABS_PATH, "name": NAME}].

        `{username}`-style fields in `path` are expanded like KubeSpawner's other templates; names are
        literal. Empty: berdl-init's default (the home).""",
    )
    init_template_vars = Dict(
        config=True,
        help="Extra dotfile template variables, passed as BERDL_TEMPLATE_VARS (JSON); literal, no expansion.",
    )
    init_resources = Dict(
        default_value={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        config=True,
        help="Kubernetes resources of the initContainer (building the first virtualenv is its peak).",
    )
    init_tmp_size_limit = Unicode(
        "1Gi",
        config=True,
        help="""Size limit of the emptyDir mounted at /tmp in the initContainer.

        berdl-init's small scratch files (the venv virtualenv builds before it is copied in, virtualenv's
        app data) go there; the package restore's pip unpacks and builds in the home
        (~/.local/state/berdl-init/tmp) instead, so large packages do not need a larger limit.""",
    )
    init_runs_as_root = Bool(
        None,
        allow_none=True,
        config=True,
        help="""Start berdl-init as root (all capabilities dropped but CHOWN, SETUID, SETGID) so it can
        fix the owner of the home folder, then drop to the user.

        Unset: root exactly when the home is a hostPath of type DirectoryOrCreate, which the kubelet
        creates as root:root 0755. Otherwise it runs as the user's uid and gid.""",
    )

    init_time_budget = Float(
        150.0,
        config=True,
        help=f"""Seconds berdl-init may take at worst in a start: its first virtualenv build and, after an
        image upgrade, its bounded restore of the user's packages.

        berdl-init is held to it: its restore gets this minus {manifest.INIT_BUILD_ALLOWANCE:g} s for
        the rest of its run (BERDL_VENV_RESTORE_TIMEOUT; none at all when nothing is left), unless
        init_environment sets BERDL_VENV_RESTORE_TIMEOUT itself. When the hub loads its configuration,
        spark_create_timeout plus this must stay below start_timeout, leaving the rest of start_timeout
        for an image pull.""",
    )

    # --- the home and other volumes ------------------------------------------------------------------
    home_volume_type = Enum(
        ["hostPath", "pvc"],
        default_value="hostPath",
        config=True,
        help="Where homes live: a hostPath folder per user (often NFS on the nodes) or a PVC.",
    )
    home_host_path = Unicode(
        "/mnt/berdl/homes/{username}",
        config=True,
        help="hostPath of the user's home (home_volume_type 'hostPath'); KubeSpawner templates expand.",
    )
    home_host_path_type = Unicode(
        "DirectoryOrCreate", config=True, help="hostPath `type` of the home volume."
    )
    home_claim_name = Unicode(
        "",
        config=True,
        help="PVC holding the home (home_volume_type 'pvc'), e.g. a shared RWX claim; templates expand.",
    )
    home_sub_path = Unicode(
        "",
        config=True,
        help="subPath of the home in its volume, e.g. '{username}' for one shared claim; templates expand.",
    )
    home_mount_path = Unicode(
        "/home/{username}",
        config=True,
        help="Where the home is mounted, in the notebook container and the initContainer alike; also HOME.",
    )
    shared_mounts = List(
        Dict(),
        config=True,
        help="""Shared folders for every user: [{"name", "mount_path", "host_path" or "claim_name",
        "read_only" (default true), "sub_path", "host_path_type" (default Directory)}].""",
    )
    admin_mounts = List(
        Dict(),
        config=True,
        help="Extra folders for admins only, same form as shared_mounts.",
    )
    admin_resources = Dict(
        config=True,
        help="""Resources for admins: any of cpu_limit, cpu_guarantee, mem_limit, mem_guarantee.

        Applied when the pod manifest is built, so they win over a profile's values for admins.""",
    )

    # --- Spark ---------------------------------------------------------------------------------------
    spark_cluster_manager_url = Unicode(
        "",
        config=True,
        help="Base URL of the Spark Cluster Manager API. Empty: no Spark cluster, no SPARK_MASTER_URL.",
    )
    spark_cluster_config = Dict(
        default_value={
            "worker_count": 2,
            "worker_cores": 1,
            "worker_memory": "10GiB",
            "master_cores": 1,
            "master_memory": "8GiB",
        },
        config=True,
        help="Body of POST /clusters (SparkClusterConfig): the cluster size for every user.",
    )
    admin_spark_cluster_config = Dict(
        config=True,
        help="Keys of spark_cluster_config that differ for admins (e.g. a bigger worker_count).",
    )
    spark_create_timeout = Float(
        180.0,
        config=True,
        help="Seconds POST /clusters may take; tried once, as a second POST could build a second cluster.",
    )
    spark_request_timeout = Float(
        30.0, config=True, help="Seconds per attempt of DELETE /clusters (retried, it is idempotent)."
    )
    spark_failure_policy = Enum(
        ["fail", "continue"],
        default_value="fail",
        config=True,
        help="""What a spawn does when the Spark cluster cannot be created: 'fail' (the user reads why)
        or 'continue' (start the notebook without Spark, with a warning in the hub log).""",
    )

    # --- governance (MinIO credentials) --------------------------------------------------------------
    governance_api_url = Unicode(
        "",
        config=True,
        help="Base URL of the data-governance API (GET {url}/credentials/). Empty: no MinIO keys.",
    )
    governance_request_timeout = Float(
        30.0, config=True, help="Seconds per attempt of GET /credentials/ (retried)."
    )
    governance_failure_policy = Enum(
        ["fail", "continue"],
        default_value="fail",
        config=True,
        help="What a spawn does when MinIO credentials cannot be fetched: 'fail' or 'continue' without them.",
    )
    service_request_attempts = Integer(
        3, config=True, help="Attempts for idempotent calls (DELETE /clusters, GET /credentials/)."
    )

    # --- environment ---------------------------------------------------------------------------------
    hub_env_to_forward = List(
        Unicode(),
        config=True,
        help="""Names of hub environment variables copied into user pods (e.g. MINIO_ENDPOINT_URL).

        Only these; never the hub's whole environment. Hub secrets (cookie secret, crypt key, proxy
        token, database password) are refused even when listed.""",
    )
    auth_state_token_key = Unicode(
        "kbase_token",
        config=True,
        help="Key of the user's KBase token in the authenticator's auth state (sent as KBASE_AUTH_TOKEN).",
    )

    # --- defaults that differ from KubeSpawner's ------------------------------------------------------
    start_timeout = Integer(
        480,
        config=True,
        help="""Seconds a start may take: the Spark cluster's creation (spark_create_timeout, 180 s), then
        an image pull, berdl-init (init_time_budget, 150 s, which holds the package restore after an
        image upgrade) and the notebook's own start. zero-to-jupyterhub-k8s uses 300 s, with no Spark
        cluster to create first; 480 leaves 150 s for the pull of a large image.

        The hub refuses a configuration where spark_create_timeout plus init_time_budget does not fit.""",
    )

    @default("uid")
    def _default_uid(self) -> int:
        return DEFAULT_UID

    @default("gid")
    def _default_gid(self) -> int:
        return 100

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        # As zero-to-jupyterhub does: the image's own CMD (docker-stacks' start-notebook.py, or
        # `jupyter lab`) need not start a server that talks to the hub.
        return ["jupyterhub-singleuser"]

    @default("image")
    def _default_image(self) -> str:
        return ""  # required: KubeSpawner's default (a generic singleuser image) is not a BERDL notebook

    @default("delete_pvc")
    def _default_delete_pvc(self) -> bool:
        # Deleting a user would delete any claim matching pvc_name_template, which can be a home.
        return False

    # A guarantee the scheduler reserves, and limits, so that user pods are not BestEffort, the first
    # ones evicted under pressure. A profile or admin_resources changes them.
    @default("cpu_guarantee")
    def _default_cpu_guarantee(self) -> float:
        return 0.5

    @default("mem_guarantee")
    def _default_mem_guarantee(self) -> int:
        return 2 * 2**30

    @default("cpu_limit")
    def _default_cpu_limit(self) -> float:
        return 4.0

    @default("mem_limit")
    def _default_mem_limit(self) -> int:
        return 16 * 2**30

    @default("after_pod_created_hook")
    def _default_after_pod_created_hook(self) -> Callable[..., Awaitable[None]]:
        return _create_credentials_secret

    @validate("after_pod_created_hook")
    def _keep_the_credentials_step(self, proposal: Any) -> Callable[..., Any]:
        """An operator's hook runs after BERDL's, which creates the Secret the notebook needs."""
        hook = proposal.value
        if hook is None:
            return _create_credentials_secret
        if hook is _create_credentials_secret or getattr(hook, "berdl_chained", False):
            return hook

        async def both(spawner: BERDLSpawner, pod: dict[str, Any]) -> Any:
            await _create_credentials_secret(spawner, pod)
            return await maybe_future(hook(spawner, pod))

        both.berdl_chained = True  # type: ignore[attr-defined]
        return both

    @default("working_dir")
    def _default_working_dir(self) -> str:
        return self.home_mount_path  # terminals and kernels start in the home

    @validate("hub_env_to_forward")
    def _refuse_secret_names(self, proposal: Any) -> list[str]:
        names = list(proposal.value)
        refused = sorted(set(names) & HUB_SECRET_NAMES)
        if refused:
            raise ValueError(f"hub_env_to_forward must not name hub secrets: {', '.join(refused)}")
        return names

    @validate("shared_mounts", "admin_mounts")
    def _check_mounts(self, proposal: Any) -> list[dict[str, Any]]:
        manifest.extra_mounts(proposal.value)  # raises ValueError with the problem
        return list(proposal.value)

    @validate("admin_resources")
    def _check_admin_resources(self, proposal: Any) -> dict[str, Any]:
        unknown = set(proposal.value) - _ADMIN_RESOURCE_KEYS
        if unknown:
            raise ValueError(f"admin_resources: unknown keys {sorted(unknown)}")
        return dict(proposal.value)

    # --- per-spawn state (tokens and keys stay in memory only, never in the spawner's state) ---------
    _token: str | None = None
    _minio: MinioCredentials | None = None
    _spark_share: ClusterShare | None = None
    _notes: list[str] | None = None  # what the user is told on the progress page, beside pod events
    # The start's Spark step, under way while KubeSpawner prepares the pod (see start()).
    _spark_joining: asyncio.Future[None] | None = None

    @property
    def spark_share(self) -> ClusterShare:
        """This server's part in its user's one Spark cluster (kept in the spawner's state)."""
        if self._spark_share is None:
            self._spark_share = ClusterShare()
        return self._spark_share

    # --- pod manifest --------------------------------------------------------------------------------
    @property
    def _is_admin(self) -> bool:
        return bool(getattr(self.user, "admin", False))

    _expanded: dict[tuple[Any, ...], str] | None = None

    def _expand(self, template: str) -> str:
        """`_expand_user_properties`, remembered for the values it reads: each pod build expands the home
        templates three times, and one expansion costs a tenth of KubeSpawner's whole pod build."""
        key = (template, self.slug_scheme, self.name, self.user.name, self.user.id)
        key += (self.pod_name, self.pvc_name, self.namespace)
        if self._expanded is None:
            self._expanded = {}
        value = self._expanded.get(key)
        if value is None:
            value = self._expanded[key] = self._expand_user_properties(template)
        return value

    def _home_mount_path(self) -> str:
        return self._expand(self.home_mount_path)

    def _home_mount(self) -> dict[str, Any]:
        sub_path = self._expand(self.home_sub_path) if self.home_sub_path else ""
        return manifest.home_mount(self._home_mount_path(), sub_path)

    def _home_volume(self) -> dict[str, Any]:
        return manifest.home_volume(
            self.home_volume_type,
            host_path=self._expand(self.home_host_path),
            host_path_type=self.home_host_path_type,
            claim_name=self._expand(self.home_claim_name) if self.home_claim_name else "",
        )

    def _init_as_root(self) -> bool:
        return spawner_settings.init_as_root(
            self.init_runs_as_root, self.home_volume_type, self.home_host_path_type
        )

    def format_string(self, s: str) -> str:
        """Expand notebook_dir and default_url with the same `{username}` as the volume paths.

        JupyterHub's own expansion uses the raw user name, KubeSpawner's the safe slug: for a name that
        needs escaping, `notebook_dir = "/home/{username}"` would then miss the mounted home.
        """
        base_url = self.server.base_url if self.server else ""
        return self._expand_user_properties(s.replace("{base_url}", manifest.escape_braces(base_url)))

    def _server_root(self) -> str:
        """The notebook server's root_dir (JUPYTERHUB_ROOT_DIR), expanded as JupyterHub expands it."""
        if self.notebook_dir:
            return self.format_string(self.notebook_dir)
        return self.working_dir or self._home_mount_path()

    async def _resolve(self, value: Any) -> Any:
        return await maybe_future(value(self)) if callable(value) else value

    async def _init_container(
        self, home_mount: dict[str, Any], uid: int | None, folder_mounts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if not self.init_image:
            raise ValueError("BERDLSpawner.init_image is not set")
        gid = await self._resolve(self.gid)
        gid = None if gid is None else int(gid)
        as_root = self._init_as_root()
        refused = spawner_settings.uid_problem(uid, as_root)
        if refused:
            raise ValueError(refused)
        home = home_mount["mountPath"]
        favorites = [
            {**fav, "path": self._expand_user_properties(str(fav.get("path", "")))}
            for fav in self.init_favorites
        ]
        env = manifest.init_env(
            home=home,
            user=self.user.name,
            uid=uid,
            gid=gid,
            favorites_root=manifest.favorites_root(self._server_root(), home),
            favorites=favorites,
            template_vars=self.init_template_vars,
            restore_timeout=manifest.restore_timeout(self.init_time_budget),
            extra=self.init_environment,
        )
        return manifest.init_container(
            image=self.init_image,
            pull_policy=self.init_image_pull_policy,
            home_mount=home_mount,
            env=env,
            security_context=manifest.init_security_context(uid, gid, as_root),
            # the pod's own dicts, not the setting's: a modify_pod_hook may change them
            resources={k: dict(v) if isinstance(v, Mapping) else v for k, v in self.init_resources.items()},
            args=self.init_args,
            folder_mounts=folder_mounts,
        )

    async def get_pod_manifest(self) -> Any:
        """KubeSpawner's pod plus the home, shared and admin mounts, the berdl-init initContainer and the
        notebook container's protections.

        Everything is added to the freshly built pod, after KubeSpawner's template expansion, so JSON
        values with literal braces (favorites, template variables) reach berdl-init unchanged.
        """
        if not self.image:
            raise ValueError("BERDLSpawner.image is not set")
        if self._is_admin:
            for key, value in self.admin_resources.items():
                setattr(self, key, value)
        operator_inits = self.init_containers
        if isinstance(operator_inits, Mapping):
            operator_inits = list(operator_inits.values())
        if any(_name_of(c) == manifest.INIT_CONTAINER_NAME for c in operator_inits):
            raise ValueError(
                f"KubeSpawner.init_containers: the name {manifest.INIT_CONTAINER_NAME!r} is BERDL's own"
            )
        uid = await self._resolve(self.uid)
        uid = None if uid is None else int(uid)
        pod = await super().get_pod_manifest()
        spec = pod.spec

        home_mount = self._home_mount()
        volumes = [self._home_volume()]
        mounts = [home_mount]
        for specs in (self.shared_mounts, self.admin_mounts if self._is_admin else []):
            extra_volumes, extra_mounts = manifest.extra_mounts(specs)
            volumes += extra_volumes
            mounts += extra_mounts
        volumes.append(manifest.init_tmp_volume(self.init_tmp_size_limit))

        taken = {_name_of(v) for v in spec.volumes or []}
        clash = taken & {v["name"] for v in volumes}
        if clash:
            raise ValueError(f"KubeSpawner.volumes: the names {sorted(clash)} are BERDL's own")
        spec.volumes = list(spec.volumes or []) + [_k8s_model(V1Volume, v) for v in volumes]

        notebook = next(c for c in spec.containers if c.name == "notebook")
        notebook.env = list(notebook.env or []) + self._reference_variables()
        notebook.volume_mounts = list(notebook.volume_mounts or []) + [
            _k8s_model(V1VolumeMount, m) for m in mounts
        ]
        # KubeSpawner's context (uid, gid, container_security_context) wins over BERDL's defaults.
        notebook.security_context = manifest.notebook_security_context(uid) | dict(
            notebook.security_context or {}
        )

        # berdl-init first: other initContainers may expect a prepared home.
        init = _k8s_model(V1Container, await self._init_container(home_mount, uid, mounts[1:]))
        spec.init_containers = [init, *(spec.init_containers or [])]

        # In a start, the Spark cluster was being created while this pod was built: its answer is the
        # last thing the pod needs, and a refusal ends the start here, before any pod exists.
        if self._spark_joining is not None:
            await self._spark_joining
        if self.spark_share.holds and self.spark_share.master_url:
            _set_variable(notebook, "SPARK_MASTER_URL", self.spark_share.master_url)
        return pod

    # --- environment ---------------------------------------------------------------------------------
    def get_env(self) -> dict[str, Any]:
        """JupyterHub's per-server variables, BERDL's defaults, the operator's `environment` (which wins
        over those defaults); no credential. get_pod_manifest() adds the variables that are references
        (the credentials, from the server's Secret, and SPARK_DRIVER_HOST), and SPARK_MASTER_URL, the
        user's cluster (which wins over an operator's value), once the cluster is known."""
        home = self._home_mount_path()
        env: dict[str, Any] = {
            "HOME": home,
            # The folders berdl-init prepares; per user, so they cannot be the image's static ENV (also
            # right in a `kubectl exec` shell, which no start-up hook of the image runs for).
            "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
            "JUPYTER_DATA_DIR": f"{home}/.jupyter/data",
            "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter/runtime",
        }
        env.update((name, os.environ[name]) for name in self.hub_env_to_forward if name in os.environ)
        env.update(super().get_env())
        env["JUPYTERHUB_USER"] = self.user.name
        for variable in credentials.KEY_OF_VARIABLE:
            # Never a value in the pod, nor an operator's stand-in: get_pod_manifest() adds references.
            env.pop(variable, None)
        return env

    def _reference_variables(self) -> list[V1EnvVar]:
        """The notebook's variables that are references, not values: the credentials the server's Secret
        holds, and SPARK_DRIVER_HOST (the executors connect back to the driver by the pod's own address)
        unless the operator's `environment` sets it.

        Added as models after KubeSpawner's make_pod, which deep-copies every dict-valued variable."""
        refs = []
        if "SPARK_DRIVER_HOST" not in self.environment:
            refs.append(
                {"name": "SPARK_DRIVER_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
            )
        held = self.credential_values()
        keys = {v: k for v, k in credentials.KEY_OF_VARIABLE.items() if k in held}
        refs += credentials.env_references(credentials.secret_name(self.pod_name), keys)
        return [_k8s_model(V1EnvVar, ref) for ref in refs]

    def credential_values(self) -> dict[str, str]:
        """What the server's Secret holds: the KBase token, the MinIO keys, the JupyterHub API token."""
        values: dict[str, str] = {}
        if self.api_token:
            values["JUPYTERHUB_API_TOKEN"] = self.api_token
        if self._token:
            values["KBASE_AUTH_TOKEN"] = self._token
        if self._minio is not None:
            values["MINIO_ACCESS_KEY"] = self._minio.access_key
            values["MINIO_SECRET_KEY"] = self._minio.secret_key
        return values

    # --- services ------------------------------------------------------------------------------------
    def _spark(self) -> SparkClusterManager:
        return SparkClusterManager(
            self.spark_cluster_manager_url,
            create=Bounds(timeout=self.spark_create_timeout, attempts=1),
            delete=Bounds(timeout=self.spark_request_timeout, attempts=self.service_request_attempts),
        )

    def _governance(self) -> GovernanceClient:
        return GovernanceClient(
            self.governance_api_url,
            Bounds(timeout=self.governance_request_timeout, attempts=self.service_request_attempts),
        )

    async def run_auth_state_hook(self, auth_state: dict[str, Any] | None) -> None:
        """The hub hands over the decrypted auth state before each spawn: keep the token in memory."""
        if auth_state:
            self._token = auth_state.get(self.auth_state_token_key) or None
        await super().run_auth_state_hook(auth_state)

    async def _user_token(self) -> str | None:
        if self._token:
            return self._token
        get_auth_state = getattr(self.user, "get_auth_state", None)
        if get_auth_state is None:
            return None
        auth_state = await get_auth_state()
        self._token = (auth_state or {}).get(self.auth_state_token_key) or None
        return self._token

    def _spark_config(self) -> dict[str, Any]:
        config = dict(self.spark_cluster_config)
        if self._is_admin:
            config.update(self.admin_spark_cluster_config)
        return config

    async def _fetch_credentials(self, token: str | None) -> None:
        if not self.governance_api_url:
            return
        try:
            if not token:
                raise ServiceError(GovernanceClient.service, "auth", "no KBase token in the auth state")
            self._minio = await self._governance().credentials(token)
        except ServiceError as exc:
            if self.governance_failure_policy == "fail":
                raise SpawnRefused(
                    f"Your data-lake (MinIO) credentials could not be fetched: {exc}."
                ) from None
            self.log.warning("Starting %s without MinIO credentials: %s", self._log_name, exc)

    # --- the user's one Spark cluster ---------------------------------------------------------------
    def _sibling_shares(self) -> list[ClusterShare]:
        """The cluster shares of the user's other servers (the hub keeps every server it runs in
        `user.spawners`, also after a restart, with the state each spawner saved)."""
        spawners = getattr(self.user, "spawners", None) or {}
        return [s.spark_share for s in spawners.values() if s is not self and isinstance(s, BERDLSpawner)]

    async def _create_spark_cluster(self, token: str, config: Mapping[str, Any]) -> SparkCluster:
        cluster = await self._spark().create(token, config)
        self.log.info("Spark cluster %s for %s: %s", cluster.cluster_id, self._log_name, cluster.master_url)
        return cluster

    async def _join_spark_cluster(self, token: str | None) -> None:
        """Use the user's cluster: the one another server holds, else a new one of this profile's size."""
        if not self.spark_cluster_manager_url:
            return
        share = self.spark_share
        owed = share.delete_pending  # left by an earlier failed delete: a refused create keeps it
        async with user_cluster.user_lock(self.user.name):
            try:
                if not token:
                    raise ServiceError(
                        SparkClusterManager.service, "auth", "no KBase token in the auth state"
                    )
                got = await user_cluster.acquire(
                    share,
                    self._sibling_shares(),
                    self._spark_config(),
                    functools.partial(self._create_spark_cluster, token),
                    record=self._save_state,
                )
                self._save_state()
            except ServiceError as exc:
                if exc.may_have_acted:
                    # A time-out or a 5xx may still have built it; acquire() took the duty to delete.
                    await self._release_spark_cluster_locked("its creation failed")
                else:
                    share.delete_pending = owed  # refused: the manager built nothing
                self._save_state()
                if self.spark_failure_policy == "fail":
                    raise SpawnRefused(f"Your Spark cluster could not be created: {exc}.") from None
                self.log.warning("Starting %s without a Spark cluster: %s", self._log_name, exc)
                return
        if got.shared_config is not None:
            self.log.info("%s shares its user's Spark cluster %s", self._log_name, got.master_url)
            if got.shared_config != share.config:
                self._note(
                    "This server shares the Spark cluster of your other running server, with the size "
                    "that server started it with, not the one of the profile chosen here."
                )

    def _save_state(self) -> None:
        """Write this server's state (its cluster share) to the hub's database now. JupyterHub saves it
        only once start() returns: a hub that dies in between would forget that this server holds the
        user's cluster (or may have asked for one), and nothing would delete it."""
        if self.orm_spawner is None or self.db is None:
            return
        self.orm_spawner.state = self.get_state()
        self.db.commit()

    async def _delete_spark_cluster(self, why: str) -> bool:
        """DELETE /clusters; errors are logged, never raised, so that stopping always completes."""
        token = await self._user_token()
        if not token:
            self.log.error("Cannot delete the Spark cluster of %s: no token in auth state", self._log_name)
            return False
        try:
            message = await self._spark().delete(token)
        except ServiceError as exc:
            if exc.status == 404:  # nothing to delete, said differently
                return True
            self.log.error("Could not delete the Spark cluster of %s (%s): %s", self._log_name, why, exc)
            return False
        self.log.info("Deleted the Spark cluster of %s (%s): %s", self._log_name, why, message)
        return True

    async def _release_spark_cluster_locked(self, why: str) -> None:
        deleted = await user_cluster.release(
            self.spark_share, self._sibling_shares(), functools.partial(self._delete_spark_cluster, why)
        )
        if not deleted:
            self.log.debug(
                "Spark cluster of %s not deleted (%s): another server uses it", self._log_name, why
            )

    async def _release_spark_cluster(self, why: str) -> None:
        """This server no longer uses its user's cluster; the last one to stop deletes it."""
        share = self.spark_share
        if not self.spark_cluster_manager_url or not (share.holds or share.delete_pending):
            return
        async with user_cluster.user_lock(self.user.name):
            await self._release_spark_cluster_locked(why)

    # --- the credentials Secret ----------------------------------------------------------------------
    # Whether this spawner has seen its server's Secret deleted (or found none) since its last start: a
    # stop tears down, and JupyterHub's post-stop hook tears down again, which then sends no second DELETE.
    # A new hub's spawner does not know, so it deletes again (a 404 is success).
    _secret_gone: bool = False

    async def _delete_credentials_secret(self) -> None:
        """Delete the server's Secret (Kubernetes would delete it with the pod; this does not wait for
        that, nor rely on it); errors are logged, never raised."""
        if self._secret_gone:
            return
        name = credentials.secret_name(self.pod_name)
        try:
            await credentials.delete(
                self.api,
                self.namespace,
                name,
                timeout=self.k8s_api_request_timeout,
                retry_for=self.k8s_api_request_retry_timeout,
            )
        except credentials.SecretError as exc:
            self.log.error("Could not delete the credentials of %s: %s", self._log_name, exc)
        else:
            self._secret_gone = True

    async def _tear_down(self, why: str) -> None:
        """What every way out of a server does: its Secret goes, its part in the Spark cluster ends."""
        try:
            await self._delete_credentials_secret()
        finally:
            await self._release_spark_cluster(why)

    # --- lifecycle -----------------------------------------------------------------------------------
    _starting: bool = False

    def _note(self, message: str) -> None:
        self.log.info("%s: %s", self._log_name, message)
        if self._notes is None:
            self._notes = []
        self._notes.append(message)

    def is_pod_running(self, pod: dict[str, Any] | None) -> bool:
        """KubeSpawner's readiness check; while starting, a failed berdl-init ends the spawn at once."""
        if self._starting:
            failure = manifest.init_failure(pod)
            if failure:
                raise SpawnRefused(failure)
        return super().is_pod_running(pod)

    async def start(self) -> Any:
        """Credentials, then the Spark cluster while KubeSpawner prepares the pod; any failure tears down.

        The MinIO keys come first: a user who cannot have them gets no cluster. The cluster is created
        while KubeSpawner starts its pod reflector, makes a PVC home and builds the pod manifest (the hub's
        own work, which then costs the user nothing); get_pod_manifest() waits for it, so the pod is still
        created only once the cluster's SPARK_MASTER_URL is known (a notebook container created before
        its Secret is complete is only retried at the kubelet's own pace)."""
        self._minio = None
        self._notes = []
        self._secret_gone = False
        # Apply the chosen profile first: it may set the cluster size (KubeSpawner does it again, harmlessly).
        await self.load_user_options()
        token = await self._user_token()
        try:
            await self._fetch_credentials(token)
            self._spark_joining = asyncio.ensure_future(self._join_spark_cluster(token))
            self._starting = True
            return await super().start()
        except BaseException:
            self._starting = False
            await self._spark_settled()
            await self._tear_down("the spawn failed")
            raise
        finally:
            self._starting = False
            self._spark_joining = None

    async def _spark_settled(self) -> None:
        """Let the start's Spark step finish (it is bounded by spark_create_timeout) when the start fails
        before the manifest waited for it, so that the tear-down knows whether a cluster was made."""
        joining = self._spark_joining
        if joining is not None:
            await asyncio.wait([joining])
            if not joining.cancelled():
                joining.exception()  # seen: the start's own failure is the one raised

    async def get_url(self) -> str:
        """The server's URL, which JupyterHub asks for when it starts again and finds this server
        running (poll() is None, also for a pod whose init container or notebook is still starting):
        the pod's address, as start() would have returned it, once the pod has one, with the server's
        path (JupyterHub compares it with the whole stored URL and warns when they differ).

        A hub killed during a spawn stored only a placeholder (a random port on the hub's own host,
        set before start() ran): JupyterHub would wait http_timeout on it and then stop a server
        that was coming up."""
        reflector = self.pod_reflector  # poll() started it
        pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None
        if pod and (pod.get("status") or {}).get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            # KubeSpawner's own rule for a pod's URL (pod_connect_ip, SSL, services), the one start() uses.
            return self._get_pod_url(pod) + (self.server.base_url if self.server else "")
        return await super().get_url()

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """BERDL's notes (they come from the steps before the pod), then KubeSpawner's pod events."""
        for message in list(self._notes or []):
            yield {"progress": 5, "message": message}
        async for event in super().progress():
            yield event

    async def stop(self, now: bool = False) -> None:
        if self._starting:
            # KubeSpawner itself, in a start (a pod of the same name to replace, a failing
            # after_pod_created_hook): only the pod goes; the start's own failure path does the rest.
            await super().stop(now=now)
            return
        try:
            await super().stop(now=now)
        finally:
            await self._tear_down("the server stopped")

    async def run_post_stop_hook(self) -> Any:
        """Runs after every stop, also of a pod that was lost or never started."""
        try:
            await self._tear_down("after stop")
        finally:
            result = super().run_post_stop_hook()
        return await maybe_future(result)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        # The cluster share (master URL, size, the duty to delete): after a hub restart the user's
        # servers still share one cluster, and the last to stop deletes it. No token or key.
        share = self.spark_share.to_state()
        if share:
            state["berdl_spark"] = share
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._spark_share = ClusterShare.from_state(state.get("berdl_spark"))

    def clear_state(self) -> None:
        # The cluster share stays: it is cleared by the release that every stop runs.
        super().clear_state()
        self._minio = None
        self._token = None
        self._notes = None

    # --- configuration checked at hub load -----------------------------------------------------------
    @classmethod
    def check_config(cls, config: Any) -> None:
        """Refuse settings that do not fit together (SpawnerConfigError names each); the hub's
        configuration calls this once it is complete."""
        spawner_settings.check_config(cls, config, own_defaults={"uid": DEFAULT_UID})


def _set_variable(container: V1Container, name: str, value: str) -> None:
    """Set the container's variable `name` to `value`, in place of an entry of that name if any."""
    for variable in container.env or []:
        if variable.name == name:
            variable.value, variable.value_from = value, None
            return
    container.env = [*(container.env or []), V1EnvVar(name=name, value=value)]


async def _create_credentials_secret(spawner: BERDLSpawner, pod: dict[str, Any]) -> None:
    """KubeSpawner's after_pod_created_hook: the pod has a uid now, so its Secret can be owned by it.

    A failure here makes KubeSpawner stop the pod and the start fail, which deletes the Secret too.
    """
    values = spawner.credential_values()
    if not values:
        return
    name = credentials.secret_name(spawner.pod_name)
    body = credentials.manifest(
        name=name,
        values=values,
        pod_name=pod["metadata"]["name"],
        pod_uid=pod["metadata"]["uid"],
        labels=pod["metadata"].get("labels"),
    )
    await credentials.create(
        spawner.api,
        spawner.namespace,
        body,
        timeout=spawner.k8s_api_request_timeout,
        retry_for=spawner.k8s_api_request_retry_timeout,
    )
