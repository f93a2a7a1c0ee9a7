"""BERDLSpawner's settings: BERDL's own traits (each `help=` is its documentation), the KubeSpawner
defaults BERDL changes (each with its reason), their validators, and the service clients they describe.

They live in a class of their own so that BERDLSpawner (spawner.py) reads as the coordinator it is; an
operator still sets them as `c.BERDLSpawner.NAME`, and `BERDLSpawnerSettings.class_own_traits()` lists
BERDL's own.
"""

from __future__ import annotations

from typing import Any

from kubespawner import KubeSpawner
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, default, validate

from . import manifest, notebook_env, server_access, services, upstream
from .auth import TOKEN_KEY
from .hub_secrets import HUB_ONLY_VARIABLES
from .services import GovernanceClient, SparkClusterManager

DEFAULT_UID = 1000  # the docker-stacks user (jovyan); berdl-init gives the home to it

ADMIN_RESOURCE_KEYS = frozenset({"cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee"})


class BERDLSpawnerSettings(KubeSpawner):
    """BERDLSpawner's settings (see spawner.py for what it does with them)."""

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

        Fields in `path` are expanded like KubeSpawner's other templates (the home is
        `/home/{unescaped_username}`; `{username}` there is KubeSpawner's slug); names are literal.
        Empty: berdl-init's default (the home).""",
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
        "/mnt/berdl/homes/{unescaped_username}",
        config=True,
        help="""hostPath of the user's home (home_volume_type 'hostPath'); KubeSpawner's templates expand.

        The default is where BERDL's production hub keeps homes: the folder of the user's name, as KBase
        spells it (KubeSpawner's `{unescaped_username}`), under the homes folder. KubeSpawner's
        `{username}` is its DNS-safe slug instead (`john_doe` becomes `john-doe---` and 8 hex digits), in
        which two names can meet. A user name that cannot be one path component is refused at spawn.""",
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
        help="""subPath of the home in its volume, e.g. '{unescaped_username}' for one shared claim (the
        folder of the user's name); templates expand.""",
    )
    home_mount_path = Unicode(
        "/home/{unescaped_username}",
        config=True,
        help="""Where the home is mounted, in the notebook container and the initContainer alike; also HOME.

        The default is `/home/` and the user's name as KBase spells it, as BERDL's production hub mounts
        it, so notebooks, paths in the user's code and HOME stay where they were. In JupyterHub's own
        settings (notebook_dir, default_url) the same folder is `/home/{username}`: there `{username}` is
        the user's name, as upstream.""",
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
    spark_namespace = Unicode(
        "",
        config=True,
        help="""Namespace of the Spark pods the Spark Cluster Manager makes (its KUBE_NAMESPACE). Empty:
        the user pods' namespace.

        Each server's NetworkPolicies that open the way between the user's notebooks and the user's
        Spark pods (spark_network) are made there and in the user pods' namespace; when it is another
        namespace, the hub needs a Role there (deploy/spark-namespace/).""",
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
        default_value=list(notebook_env.FORWARDED),
        config=True,
        help=f"""Names of hub environment variables copied into user pods, each when the hub has it with
        a value (an empty one is not configured).

        By default the service endpoints BERDL's notebook reads: {", ".join(notebook_env.FORWARDED)}.
        Only these; never the hub's whole environment. Setting the list replaces it; to add names,
        extend it in the hub's Python configuration (`c.BERDLSpawner.hub_env_to_forward.extend([...])`).
        Hub secrets (cookie secret, crypt key, proxy token, database password) are refused even when
        listed. When one the notebook needs ({", ".join(notebook_env.NOTEBOOK_NEEDS)}) reaches no pod,
        the hub logs one warning naming them at start.""",
    )
    auth_state_token_key = Unicode(
        TOKEN_KEY,
        config=True,
        help="Key of the user's KBase token in the authenticator's auth state (sent as KBASE_AUTH_TOKEN).",
    )

    # --- who may open the server ----------------------------------------------------------------------
    access_for_owner_only = Bool(
        True,
        config=True,
        help="""Only the server's user may open it: not the hub's admins (JupyterHub 5's admin role holds
        access:servers, and a server receives every cookie of whoever opens it, their KBase token among
        them), nor a user it was shared with. The server asks visitors for a scope only its user holds
        (server_access: `oauth_access_scopes`). False: JupyterHub's access scopes (`access:servers` on
        the server or the user), which admins hold.""",
    )

    @default("oauth_access_scopes")
    def _default_oauth_access_scopes(self) -> list[str]:
        if self.access_for_owner_only:
            return [server_access.owners_scope(self.user.name)]
        return upstream.jupyterhub_access_scopes(self)

    # The OAuth tokens of the server's visitors may carry the owner's scope (JupyterHub gives a token the
    # subset of these its user holds): added to the list the operator allows (a callable is left as it is).
    @default("oauth_client_allowed_scopes")
    def _default_oauth_client_allowed_scopes(self) -> list[str]:
        return server_access.with_owners_scope([], self.user.name) if self.access_for_owner_only else []

    @validate("oauth_client_allowed_scopes")
    def _keep_owners_scope(self, proposal: Any) -> Any:
        allowed = proposal.value
        if callable(allowed) or self.user is None or not self.access_for_owner_only:
            return allowed
        return server_access.with_owners_scope(allowed, self.user.name)

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

    @default("working_dir")
    def _default_working_dir(self) -> str:
        return self.home_mount_path  # terminals and kernels start in the home

    @validate("hub_env_to_forward")
    def _refuse_secret_names(self, proposal: Any) -> list[str]:
        names = list(proposal.value)
        refused = sorted(set(names) & HUB_ONLY_VARIABLES)
        if refused:
            raise ValueError(f"hub_env_to_forward must not name hub secrets: {', '.join(refused)}")
        return names

    @validate("shared_mounts", "admin_mounts")
    def _check_mounts(self, proposal: Any) -> list[dict[str, Any]]:
        manifest.extra_mounts(proposal.value)  # raises ValueError with the problem
        return list(proposal.value)

    @validate("admin_resources")
    def _check_admin_resources(self, proposal: Any) -> dict[str, Any]:
        unknown = set(proposal.value) - ADMIN_RESOURCE_KEYS
        if unknown:
            raise ValueError(f"admin_resources: unknown keys {sorted(unknown)}")
        return dict(proposal.value)

    # --- the services --------------------------------------------------------------------------------
    def _spark_config(self) -> dict[str, Any]:
        config = dict(self.spark_cluster_config)
        if self._is_admin:
            config.update(self.admin_spark_cluster_config)
        return config

    def _spark(self) -> SparkClusterManager | None:
        return services.spark_manager(
            self.spark_cluster_manager_url,
            create_timeout=self.spark_create_timeout,
            request_timeout=self.spark_request_timeout,
            attempts=self.service_request_attempts,
        )

    def _governance(self) -> GovernanceClient | None:
        return services.governance(
            self.governance_api_url,
            timeout=self.governance_request_timeout,
            attempts=self.service_request_attempts,
        )

    @property
    def _is_admin(self) -> bool:
        return bool(getattr(self.user, "admin", False))
