"""BERDLSpawner: KubeSpawner plus the four things BERDL needs per user.

1. the berdl-init initContainer, added to each pod manifest as it is built (never stored in
   `self.init_containers`, so a second spawn cannot add a second one);
2. an explicit per-user environment (never the hub's whole environment);
3. the home volume, shared folders, admins' extra mounts and admins' resources;
4. the personal Spark cluster (created before the pod, deleted on every way out) and the user's MinIO
   credentials.

Everything static (packages, Jupyter settings, dotfile templates) lives in the images.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.models import V1Container, V1Volume, V1VolumeMount
from kubernetes_asyncio.client.rest import RESTResponse
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, default, validate

from . import manifest
from .services import Bounds, GovernanceClient, MinioCredentials, ServiceError, SparkClusterManager

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
    """Drop kubernetes_asyncio's debug dumps of API bodies: a pod's body holds the user's tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("response body", "request body"))


logging.getLogger("kubernetes_asyncio.client.rest").addFilter(_NoBodies())

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
        BERDL_GID and BERDL_FAVORITES_ROOT are always set by the spawner and win over these.""",
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
        "1Gi", config=True, help="Size limit of the emptyDir mounted at /tmp in the initContainer."
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
    @default("uid")
    def _default_uid(self) -> int:
        return 1000  # the docker-stacks user (jovyan); berdl-init needs a number to own the home

    @default("gid")
    def _default_gid(self) -> int:
        return 100

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        # As zero-to-jupyterhub does: the image's own CMD (docker-stacks' start-notebook.py, or
        # `jupyter lab`) need not start a server that talks to the hub.
        return ["jupyterhub-singleuser"]

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

    # --- per-spawn state (never persisted: tokens and keys stay in memory only) ----------------------
    _token: str | None = None
    _spark_master_url: str | None = None
    _minio: MinioCredentials | None = None
    _spark_needs_delete: bool = False

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
        if self.init_runs_as_root is not None:
            return self.init_runs_as_root
        return self.home_volume_type == "hostPath" and self.home_host_path_type == "DirectoryOrCreate"

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
        self, home_mount: dict[str, Any], folder_mounts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if not self.init_image:
            raise ValueError("BERDLSpawner.init_image is not set")
        uid = await self._resolve(self.uid)
        gid = await self._resolve(self.gid)
        home = home_mount["mountPath"]
        favorites = [
            {**fav, "path": self._expand_user_properties(str(fav.get("path", "")))}
            for fav in self.init_favorites
        ]
        env = manifest.init_env(
            home=home,
            user=self.user.name,
            uid=int(uid),
            gid=int(gid),
            favorites_root=manifest.favorites_root(self._server_root(), home),
            favorites=favorites,
            template_vars=self.init_template_vars,
            extra=self.init_environment,
        )
        return manifest.init_container(
            image=self.init_image,
            pull_policy=self.init_image_pull_policy,
            home_mount=home_mount,
            env=env,
            security_context=manifest.init_security_context(int(uid), int(gid), self._init_as_root()),
            # the pod's own dicts, not the setting's: a modify_pod_hook may change them
            resources={k: dict(v) if isinstance(v, Mapping) else v for k, v in self.init_resources.items()},
            args=self.init_args,
            folder_mounts=folder_mounts,
        )

    async def get_pod_manifest(self) -> Any:
        """KubeSpawner's pod plus the home, shared and admin mounts and the berdl-init initContainer.

        Everything is added to the freshly built pod, after KubeSpawner's template expansion, so JSON
        values with literal braces (favorites, template variables) reach berdl-init unchanged.
        """
        if self._is_admin:
            for key, value in self.admin_resources.items():
                setattr(self, key, value)
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

        taken = {v.name if isinstance(v, V1Volume) else v["name"] for v in spec.volumes or []}
        clash = taken & {v["name"] for v in volumes}
        if clash:
            raise ValueError(f"volume names already used by KubeSpawner.volumes: {sorted(clash)}")
        spec.volumes = list(spec.volumes or []) + [_k8s_model(V1Volume, v) for v in volumes]

        notebook = next(c for c in spec.containers if c.name == "notebook")
        notebook.volume_mounts = list(notebook.volume_mounts or []) + [
            _k8s_model(V1VolumeMount, m) for m in mounts
        ]

        # berdl-init first: other initContainers may expect a prepared home.
        others = [
            c
            for c in spec.init_containers or []
            if (c.name if isinstance(c, V1Container) else c.get("name")) != manifest.INIT_CONTAINER_NAME
        ]
        init = await self._init_container(home_mount, mounts[1:])
        spec.init_containers = [_k8s_model(V1Container, init), *others]
        return pod

    # --- environment ---------------------------------------------------------------------------------
    def get_env(self) -> dict[str, Any]:
        """JupyterHub's per-server variables, KubeSpawner's `environment`, and BERDL's, nothing else."""
        env = super().get_env()
        for name in self.hub_env_to_forward:
            if name in os.environ:
                env[name] = os.environ[name]
        env["JUPYTERHUB_USER"] = self.user.name
        home = self._home_mount_path()
        env["HOME"] = home
        # The folders berdl-init prepares; per user, so they cannot be the image's static ENV (also right in
        # a `kubectl exec` shell, which no start-up hook of the image runs for).
        env["JUPYTER_CONFIG_DIR"] = f"{home}/.jupyter"
        env["JUPYTER_DATA_DIR"] = f"{home}/.jupyter/data"
        env["JUPYTER_RUNTIME_DIR"] = f"{home}/.jupyter/runtime"
        # The executors connect back to the driver in the notebook pod, by the pod's own address.
        env["SPARK_DRIVER_HOST"] = {"valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        if self._token:
            env["KBASE_AUTH_TOKEN"] = self._token
        if self._spark_master_url:
            env["SPARK_MASTER_URL"] = self._spark_master_url
        if self._minio is not None:
            env["MINIO_ACCESS_KEY"] = self._minio.access_key
            env["MINIO_SECRET_KEY"] = self._minio.secret_key
        return env

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

    async def _create_spark_cluster(self, token: str | None) -> None:
        if not self.spark_cluster_manager_url:
            return
        try:
            if not token:
                raise ServiceError(SparkClusterManager.service, "auth", "no KBase token in the auth state")
            self._spark_needs_delete = True  # from here on, every way out deletes the cluster
            cluster = await self._spark().create(token, self._spark_config())
        except ServiceError as exc:
            if exc.may_have_acted:  # a time-out or a 5xx may still have built it
                await self._delete_spark_cluster("its creation failed")
            else:  # refused or unreachable: nothing was built
                self._spark_needs_delete = False
            if self.spark_failure_policy == "fail":
                raise SpawnRefused(f"Your Spark cluster could not be created: {exc}.") from None
            self.log.warning("Starting %s without a Spark cluster: %s", self._log_name, exc)
            return
        self._spark_master_url = cluster.master_url
        self.log.info("Spark cluster %s for %s: %s", cluster.cluster_id, self._log_name, cluster.master_url)

    async def _delete_spark_cluster(self, why: str) -> None:
        """DELETE /clusters; errors are logged, never raised, so that stopping always completes."""
        if not self.spark_cluster_manager_url or not self._spark_needs_delete:
            return
        token = await self._user_token()
        if not token:
            self.log.error("Cannot delete the Spark cluster of %s: no token in auth state", self._log_name)
            return
        try:
            message = await self._spark().delete(token)
        except ServiceError as exc:
            if exc.status == 404:  # nothing to delete, said differently
                self._spark_needs_delete = False
                return
            self.log.error("Could not delete the Spark cluster of %s (%s): %s", self._log_name, why, exc)
            return
        self._spark_needs_delete = False
        self.log.info("Deleted the Spark cluster of %s (%s): %s", self._log_name, why, message)

    # --- lifecycle -----------------------------------------------------------------------------------
    _starting: bool = False

    def is_pod_running(self, pod: dict[str, Any] | None) -> bool:
        """KubeSpawner's readiness check; while starting, a failed berdl-init ends the spawn at once."""
        if self._starting:
            failure = manifest.init_failure(pod)
            if failure:
                raise SpawnRefused(failure)
        return super().is_pod_running(pod)

    async def _make_create_pod_request(self, pod: Any, request_timeout: float) -> bool:
        """KubeSpawner's pod creation, minus its error log of the whole manifest (which holds tokens)."""
        try:
            self.log.info("Attempting to create pod %s, with timeout %s", pod.metadata.name, request_timeout)
            await asyncio.wait_for(self._create_pod(pod), request_timeout)
            return True
        except asyncio.TimeoutError:
            return False  # exponential_backoff tries again
        except ApiException as exc:
            if exc.status != 409:
                self.log.error("Kubernetes refused pod %s: %s %s", pod.metadata.name, exc.status, exc.reason)
                raise
            # A pod of the same name is still there (a previous server): remove it and try again.
            self.log.info("Found existing pod %s, deleting it before starting again", pod.metadata.name)
            await KubeSpawner.stop(self, True)
            return False

    async def _create_pod(self, pod: Any) -> None:
        """POST the pod, without reading the created pod back into a V1Pod: KubeSpawner never uses it, and
        that conversion was a fifth of the hub's CPU when hundreds of spawns reached this point at once."""
        response = await self.api.create_namespaced_pod(self.namespace, pod, _preload_content=False)
        async with response:
            if not 200 <= response.status <= 299:
                data = await response.read()
                error = ApiException(http_resp=RESTResponse(response, data))
                error.body = data.decode("utf-8", "replace")  # as kubernetes_asyncio leaves it
                raise error

    async def _start(self) -> Any:
        """Credentials and Spark before the pod; on any failure after POST /clusters, delete the cluster."""
        self._spark_master_url = None
        self._minio = None
        # Apply the chosen profile first: it may set the cluster size (KubeSpawner does it again, harmlessly).
        await self.load_user_options()
        token = await self._user_token()
        try:
            await self._fetch_credentials(token)
            await self._create_spark_cluster(token)
            self._starting = True
            return await super()._start()
        except BaseException:
            await self._delete_spark_cluster("the spawn failed")
            raise
        finally:
            self._starting = False

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            await self._delete_spark_cluster("the server stopped")

    async def run_post_stop_hook(self) -> Any:
        """Runs after every stop, also of a pod that was lost or never started: delete the cluster."""
        try:
            await self._delete_spark_cluster("after stop")
        finally:
            result = super().run_post_stop_hook()
        return await maybe_future(result)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        # Only a flag: after a hub restart, stopping the server still deletes its cluster.
        if self._spark_needs_delete:
            state["berdl_spark_cluster"] = True
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("berdl_spark_cluster"):
            self._spark_needs_delete = True

    def clear_state(self) -> None:
        super().clear_state()
        self._spark_master_url = None
        self._minio = None
        self._token = None
