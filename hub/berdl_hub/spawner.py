"""BERDLSpawner: KubeSpawner plus what BERDL needs per user. The class coordinates; its settings are in
`spawner_traits`, and each job is done by a module of its own:

- `pod_parts` and `manifest`: the berdl-init initContainer, the home, shared and admin folders, and the
  notebook's protections, added to each pod KubeSpawner builds;
- `user_cluster.ServerCluster`: the server's part in its user's one Spark cluster (created by the first
  server, deleted by the last), with its failure policy and its duty to delete;
- `minio_keys`: the user's MinIO keys, with their failure policy;
- `server_objects` (and `credentials`, `spark_connect`, `spark_network`): the objects the server owns
  beside its pod (the credentials Secret, the Spark Connect Service, the NetworkPolicies to its user's
  Spark pods), made once the pod exists and deleted once;
- `notebook_env`: what the notebook image expects in its environment, and where each value comes from;
- `home_names`: whether the user's name, which names the home, is one path component;
- `start_attempt`: what one start knows, and the tear-down of every way out; `server_wiring`: how it and
  the server's objects are made from the spawner; `server_state`: what the spawner's saved state holds;
- `upstream`: every non-public part of KubeSpawner and JupyterHub used here; `spawner_settings`: the
  settings checked together when the hub loads them.

Everything static (packages, Jupyter settings, dotfile templates) lives in the images.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from jupyterhub.utils import maybe_future

from . import (
    credentials,
    home_names,
    manifest,
    metrics,
    minio_keys,
    notebook_env,
    pod_parts,
    server_objects,
    server_wiring,
    spark_connect,
    spawner_settings,
    upstream,
)
from .errors import SpawnRefused
from .server_objects import ServerPod
from .server_state import ServerState
from .spawner_settings import SpawnerConfigError  # noqa: F401  (what check_config raises)
from .spawner_traits import DEFAULT_UID, BERDLSpawnerSettings
from .start_attempt import StartAttempt

__all__ = ["BERDLSpawner", "SpawnRefused"]


class _NoBodies(logging.Filter):
    """Drop kubernetes_asyncio's debug dumps of API bodies: a credentials Secret's body holds the user's
    tokens (base64 is no protection)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("response body", "request body"))


logging.getLogger("kubernetes_asyncio.client.rest").addFilter(_NoBodies())


class BERDLSpawner(BERDLSpawnerSettings):
    """KubeSpawner for BERDL: home setup by an initContainer, a Spark cluster and MinIO keys per user.

    Its settings are BERDLSpawnerSettings' (spawner_traits); configure them as `c.BERDLSpawner.NAME`.
    """

    # --- what a server holds in memory (tokens and keys never go in the spawner's state) ------------
    _token: str | None = None  # the user's KBase token, from the auth state
    _attempt: StartAttempt | None = None
    _saved: ServerState | None = None
    _reconciled = False  # this process has given the running server the objects it lacks
    _profile: dict[str, Any] | None = None  # the profile_list entry of this start (BERDL_PROFILE_JSON)

    @property
    def saved(self) -> ServerState:
        """What the server keeps in the spawner's state (server_state): its Spark share, its Service name."""
        if self._saved is None:
            self._saved = ServerState.new(self.namespace, self.pod_name)
        return self._saved

    @property
    def attempt(self) -> StartAttempt:
        """The current start's record; a hub that restarted makes one when it first needs it."""
        if self._attempt is None:
            self._attempt = server_wiring.new_attempt(self)
        return self._attempt

    def _profile_label(self) -> str:
        """The start's profile in metrics: the slug the user chose (KubeSpawner checked it against the
        profile list), `default` without a profile list or a choice."""
        return metrics.profile_label(bool(self.profile_list), (self.user_options or {}).get("profile"))

    def owned_objects(self) -> list[server_objects.Owned]:
        """The objects this server owns beside its pod, in the order they are made (server_wiring); a
        subclass may add its own."""
        return server_wiring.owned_objects(self)

    # --- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> Any:
        """The MinIO keys (a user who cannot have them gets no cluster), then the Spark cluster while
        KubeSpawner prepares the pod (get_pod_manifest() waits for it); any failure tears down."""
        home_names.refuse(self.user.name)
        # The chosen profile first: it may set any setting, the cluster's size and where the server's
        # objects go included.
        await upstream.apply_user_options(self)
        attempt = self._attempt = server_wiring.new_attempt(self)
        self._reconciled = True
        self.saved.service.forget()  # an earlier start's may be another's by now: this one chooses
        attempt.profile = attempt.cluster.profile = self._profile_label()
        self._profile = await upstream.chosen_profile(self)
        token = await self._user_token()
        try:
            attempt.minio = await minio_keys.fetch(
                self._governance(),
                token,
                fail_on_error=self.governance_failure_policy == "fail",
                log=self.log,
                name=upstream.log_name(self),
                profile=attempt.profile,
            )
            attempt.cluster.begin_join(token, self._spark_config())
            attempt.starting = True
            url = await super().start()
            metrics.spawn_parts(attempt.profile, attempt.parts(time.monotonic()))
            return url
        except BaseException:
            attempt.starting = False
            await attempt.cluster.settle()
            await attempt.tear_down(self.saved.service, "the spawn failed")
            raise
        finally:
            attempt.starting = False
            attempt.objects.start_ended()

    async def _make_create_pod_request(self, pod: Any, request_timeout: float) -> bool:
        """KubeSpawner's pod create (upstream.create_pod), then the server's objects, owned by the pod the
        API server's answer describes. (An after_pod_created_hook would wait for KubeSpawner's reflector
        to see the pod's uid, polling with random back-offs: the slowest of 200 spawns at once waited
        over a second.) A failure stops the pod and fails the start, as KubeSpawner does for a hook's."""
        created = await upstream.create_pod(self, pod, request_timeout)
        if created is None:
            return False
        try:
            await _create_server_objects(self, created)
        except Exception:
            await self.stop(True)
            raise
        return True

    def is_pod_running(self, pod: dict[str, Any] | None) -> bool:
        """KubeSpawner's readiness check; while starting, a failed berdl-init ends the spawn at once.
        berdl-init's run is counted (its metrics) once, when it failed or when the pod runs."""
        attempt = self.attempt
        if attempt.starting and (failure := manifest.init_failure(pod)):
            attempt.init_ended(pod)
            raise SpawnRefused(failure)
        running: bool = super().is_pod_running(pod)
        if running and attempt.starting:
            attempt.init_ended(pod)
        return running

    async def poll(self) -> int | None:
        """KubeSpawner's poll; the first of a restarted hub's (it polls every server it finds) also gives
        the running server what objects it lacks, and deletes what lost pods left in other namespaces."""
        status: int | None = await super().poll()
        if status is None:
            pod = None if self._reconciled else upstream.reflected_pod(self)
            self._reconciled = True
            if pod:
                self.saved.service.read_from(pod)
            await self.attempt.objects.after_hub_start(
                ServerPod.of(pod) if pod else None,
                lambda: upstream.reflected_pod_uids(self),
            )
        return status

    async def get_url(self) -> str:
        """The pod's URL, as start() returns it, for a restarted hub that finds the server running: a hub
        killed during a spawn stored only a placeholder (a port on the hub's own host) and would wait
        http_timeout on it, then stop a server that was coming up."""
        pod = upstream.reflected_pod(self)
        if pod and (pod.get("status") or {}).get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            return upstream.pod_url(self, pod) + (self.server.base_url if self.server else "")
        url: str = await super().get_url()
        return url

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """BERDL's notes (they come from the steps before the pod), then KubeSpawner's pod events."""
        for message in list(self.attempt.notes):
            yield {"progress": 5, "message": message}
        async for event in super().progress():
            yield event

    async def stop(self, now: bool = False) -> None:
        if self.attempt.starting:
            # KubeSpawner itself, in a start: only the pod goes; the start's failure path does the rest.
            await super().stop(now=now)
            return
        try:
            await super().stop(now=now)
        finally:
            await self.attempt.tear_down(self.saved.service, "the server stopped")

    async def run_post_stop_hook(self) -> Any:
        """Runs after every stop, also of a pod that was lost or never started."""
        try:
            await self.attempt.tear_down(self.saved.service, "after stop")
        finally:
            result = super().run_post_stop_hook()
        return await maybe_future(result)

    # --- state ---------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        return state | self.saved.to_state()

    def load_state(self, state: dict[str, Any]) -> None:
        # After KubeSpawner's, which may restore the pod's name and namespace: the Service's name is the
        # restored pod's.
        super().load_state(state)
        self._saved = ServerState.from_state(state, self.namespace, self.pod_name)
        self._attempt = None  # the share it would hold is a new one

    def clear_state(self) -> None:
        # The cluster share stays: it is cleared by the release that every stop runs. The Service's name
        # goes (JupyterHub clears the state after the stop and its post-stop hook, which delete by it): the
        # next start chooses anew.
        super().clear_state()
        self._token = None
        self.saved.service.forget()
        if self._attempt is not None:
            self._attempt.minio = None

    async def run_auth_state_hook(self, auth_state: dict[str, Any] | None) -> None:
        """The hub hands over the decrypted auth state before each spawn: keep the token in memory."""
        if auth_state:
            self._token = auth_state.get(self.auth_state_token_key) or None
        await super().run_auth_state_hook(auth_state)

    async def use_kbase_token(self, token: str) -> None:
        """A newer KBase token of the user, which the hub has checked (token_refresh): this server uses it
        from now on for its own calls (the Spark cluster's delete at its stop), and its credentials Secret
        holds it, so that a restarted notebook container starts with it. Raises ObjectError when the
        Secret cannot be updated."""
        self._token = token
        secret = next(o for o in self.attempt.objects.owned if isinstance(o, credentials.CredentialsSecret))
        if not await self.attempt.objects.update(secret, credentials.token_update(token)):
            self.log.info("%s has no credentials Secret to update yet", upstream.log_name(self))

    async def _user_token(self) -> str | None:
        if not self._token:
            get_auth_state = getattr(self.user, "get_auth_state", None)
            auth_state = await get_auth_state() if get_auth_state is not None else None
            self._token = (auth_state or {}).get(self.auth_state_token_key) or None
        return self._token

    def credential_values(self) -> dict[str, str]:
        """What the server's Secret holds (credentials.values)."""
        return credentials.values(api_token=self.api_token, kbase_token=self._token, minio=self.attempt.minio)

    # --- the pod -------------------------------------------------------------------------------------
    async def get_pod_manifest(self) -> Any:
        """KubeSpawner's pod plus BERDL's parts (pod_parts), and SPARK_MASTER_URL: in a start, the Spark
        cluster was being created while the pod was built; a refusal ends the start here, before any
        pod exists."""
        if not self.image:
            raise ValueError("BERDLSpawner.image is not set")
        home_names.refuse(self.user.name)
        if self._is_admin:
            for key, value in self.admin_resources.items():
                setattr(self, key, value)
        pod_parts.refuse_reserved_init_container(self.init_containers)
        server = pod_parts.ForServer(
            user=self.user.name,
            admin=self._is_admin,
            uid=await pod_parts.resolved_id(self.uid, self),
            gid=await pod_parts.resolved_id(self.gid, self),
            expand=self._expand,
            notebook_dir=self.format_string(self.notebook_dir) if self.notebook_dir else "",
            env=notebook_env.references(
                self.environment, credentials.env_references(self.pod_name, self.credential_values())
            ),
        )
        pod = await super().get_pod_manifest()
        pod_parts.add(pod, pod_parts.build(self, server))
        await self._add_spark(pod)
        return pod

    async def _add_spark(self, pod: Any) -> None:
        """The server's Spark Connect Service name (the pod's label, SPARK_CONNECT_URL), then, once the
        cluster is known, SPARK_MASTER_URL and the sizes the cluster was created with."""
        service = self.saved.service.choose(
            user=self.user.name,
            default_server=not self.name,
            pods=upstream.reflected_pods(self),
            kubespawner_service=self.services_enabled or self.internal_ssl,
            log=self.log,
            server=upstream.log_name(self),
        )
        pod.metadata.labels = {**(pod.metadata.labels or {}), spark_connect.LABEL: service}
        master_url = await self.attempt.master_url()
        sizes = self.attempt.cluster.sizes()
        pod_parts.set_variables(pod, notebook_env.spark_facts(service, self.namespace, master_url, sizes))

    def get_env(self) -> dict[str, Any]:
        """The notebook's variables that are values (notebook_env.variables), never a credential:
        get_pod_manifest() adds the references, and the Spark facts once they are known."""
        return notebook_env.variables(
            home=pod_parts.home_mount_path(self, self._expand),
            forwarded=notebook_env.forwarded(self.hub_env_to_forward, os.environ),
            spawner_env=super().get_env(),
            user=self.user.name,
            profile=self._profile,
        )

    def _expand(self, template: str) -> str:
        return upstream.expand(self, template)

    # --- configuration checked at hub load -----------------------------------------------------------
    @classmethod
    def check_config(cls, config: Any) -> None:
        """Refuse settings that do not fit together (SpawnerConfigError names each); the hub's
        configuration calls this once it is complete."""
        spawner_settings.check_config(cls, config, own_defaults={"uid": DEFAULT_UID})


async def _create_server_objects(spawner: BERDLSpawner, pod: dict[str, Any]) -> None:
    """The server's objects, owned by its pod, which the API server has just created (with its uid)."""
    spawner.attempt.pod_created = time.monotonic()
    await spawner.attempt.objects.create(ServerPod.of(pod))
