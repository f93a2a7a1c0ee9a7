"""BERDL's own metrics, in JupyterHub's Prometheus registry (prometheus_client's default one), so that
`/hub/metrics` serves them beside JupyterHub's `jupyterhub_*` series.

Every name starts with `berdl_`. Labels name a profile, a step's outcome, a kind of object or who asked
for a stop, never a user or a server: each label has a handful of values (a profile is the slug of one
of the operator's `profile_list` entries, `default` when the user chose none), so the number of series
does not grow with the users. The steps record into these with the small functions below; what each
series means, and the alerts on them, is in deploy/README.md ("Operating it").

The label values that alerts compare against exist from the hub's start at zero (for the `default`
profile), so that a first failure is an increase Prometheus sees; another profile's series appear at its
first start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from time import monotonic
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram

from .services import ServiceError

DEFAULT_PROFILE = "default"

#: A spawn's parts and berdl-init, in seconds: JupyterHub's own buckets for a spawn's duration.
SPAWN_BUCKETS = (0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 180, 300, 600)
#: A call to a service or to the Kubernetes API.
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: How a call to a BERDL service ended: the service refused (4xx), did not answer in time, or failed
#: otherwise (5xx, no connection, a broken answer, no token to send).
CALL_OUTCOMES = ("ok", "refused", "timed_out", "failed")
#: How a server's start came to its Spark cluster.
CLUSTER_OUTCOMES = ("created", "shared", "refused", "timed_out", "failed")
#: How a delete of the user's cluster ended (`absent`: there was none, also a success).
DELETE_OUTCOMES = ("deleted", "absent", "failed")
#: berdl-init's run, as its summary says (berdl_init.termination), or `unknown` without a summary (an
#: init image older than the summary, or one killed before it wrote it) that did not fail.
INIT_RESULTS = ("changed", "unchanged", "warned", "failed", "unknown")
#: KBase Auth2's answer about a token.
AUTH2_OUTCOMES = ("valid", "invalid", "unavailable")
#: The parts of a successful start, one after the other (StartAttempt.parts).
SPAWN_PARTS = ("hub", "spark", "init", "server")
#: Who asked the hub to stop a server: the idle culler's service token, the server's own user, another
#: user (an admin), another service, or the hub itself when a user's KBase token was revoked.
STOPPERS = ("culler", "user", "admin", "service", "revocation")

SPARK_CLUSTER_STARTS = Counter(
    "berdl_spark_cluster_starts",
    "Servers' starts that asked for their user's Spark cluster, by how it ended: created (POST /clusters), "
    "shared (another server of the user holds it), refused (4xx), timed_out, failed.",
    ["profile", "outcome"],
)
SPARK_CLUSTER_CREATE_SECONDS = Histogram(
    "berdl_spark_cluster_create_duration_seconds",
    "Seconds a POST /clusters to the Spark Cluster Manager took, by outcome (created, refused, timed_out, "
    "failed).",
    ["profile", "outcome"],
    buckets=SPAWN_BUCKETS,
)
SPARK_CLUSTER_DELETE_SECONDS = Histogram(
    "berdl_spark_cluster_delete_duration_seconds",
    "Seconds a DELETE /clusters took, by outcome (deleted, absent, failed).",
    ["outcome"],
    buckets=CALL_BUCKETS,
)
MINIO_FETCH_SECONDS = Histogram(
    "berdl_minio_credentials_fetch_duration_seconds",
    "Seconds the governance API took to give a start its user's MinIO keys, by outcome (ok, refused, "
    "timed_out, failed).",
    ["profile", "outcome"],
    buckets=CALL_BUCKETS,
)
INIT_RUNS = Counter(
    "berdl_init_runs",
    "berdl-init's runs in the starts of servers, as the kubelet reports its initContainer: result "
    "(changed, unchanged, warned, failed, unknown) and exit status.",
    ["profile", "result", "exit_status"],
)
INIT_SECONDS = Histogram(
    "berdl_init_duration_seconds",
    "Seconds berdl-init ran in a start (its own measure; else the kubelet's startedAt to finishedAt), by "
    "result.",
    ["profile", "result"],
    buckets=SPAWN_BUCKETS,
)
SPAWN_PART_SECONDS = Histogram(
    "berdl_spawn_part_duration_seconds",
    "Seconds each part of a successful start took: hub (the hub's own work, the MinIO keys included), "
    "spark (the pod waiting for the Spark cluster), init (berdl-init), server (the rest of the pod's start: "
    "scheduling, image pulls, the notebook container until it runs).",
    ["profile", "part"],
    buckets=SPAWN_BUCKETS,
)
AUTH2_CHECK_SECONDS = Histogram(
    "berdl_auth2_check_duration_seconds",
    "Seconds a check of a KBase token with Auth2 took, by outcome (valid, invalid, unavailable).",
    ["outcome"],
    buckets=CALL_BUCKETS,
)
SERVER_OBJECT_SECONDS = Histogram(
    "berdl_server_object_duration_seconds",
    "Seconds a create or delete of an object a server owns beside its pod (its credentials Secret...) "
    "took, by kind, operation and outcome (ok; absent: a delete found none; failed).",
    ["kind", "operation", "outcome"],
    buckets=CALL_BUCKETS,
)
PROXY_ROUTE_RESTORES = Counter(
    "berdl_proxy_route_restores",
    "Times berdl-proxy-watch found the proxy without its routes (a restarted proxy) and had the hub "
    "restore them (POST /hub/api/proxy), by outcome (ok, failed), as the hub answered it.",
    ["outcome"],
)
SERVER_STOPS = Counter(
    "berdl_server_stops",
    "Stops of servers the hub accepted, by who asked: culler (jupyterhub-idle-culler), user (the "
    "server's own user), admin (another user), service (another service), revocation (the hub, for a "
    "revoked KBase token).",
    ["by"],
)

_INITIALIZED: set[str] = set()


def _initialize(profile: str) -> None:
    """Create the series alerts compare against, at zero, for `profile`."""
    if profile in _INITIALIZED:
        return
    _INITIALIZED.add(profile)
    for outcome in CLUSTER_OUTCOMES:
        SPARK_CLUSTER_STARTS.labels(profile, outcome)
    for outcome in ("created", *CLUSTER_OUTCOMES[2:]):
        SPARK_CLUSTER_CREATE_SECONDS.labels(profile, outcome)
    for outcome in CALL_OUTCOMES:
        MINIO_FETCH_SECONDS.labels(profile, outcome)
    for result in INIT_RESULTS:
        INIT_SECONDS.labels(profile, result)
    for part in SPAWN_PARTS:
        SPAWN_PART_SECONDS.labels(profile, part)
    INIT_RUNS.labels(profile, "failed", "0")


def _initialize_global() -> None:
    for outcome in DELETE_OUTCOMES:
        SPARK_CLUSTER_DELETE_SECONDS.labels(outcome)
    for outcome in AUTH2_OUTCOMES:
        AUTH2_CHECK_SECONDS.labels(outcome)
    for outcome in ("ok", "failed"):
        PROXY_ROUTE_RESTORES.labels(outcome)
    for by in STOPPERS:
        SERVER_STOPS.labels(by)
    _initialize(DEFAULT_PROFILE)


_initialize_global()


def call_outcome(error: ServiceError | None) -> str:
    """A call's outcome label: ok, refused (a 4xx answer), timed_out, failed."""
    if error is None:
        return "ok"
    if error.kind == "timeout":
        return "timed_out"
    if error.kind == "http" and error.status is not None and 400 <= error.status < 500:
        return "refused"
    return "failed"


def profile_label(profile_list_set: bool, chosen: Any) -> str:
    """The profile label of a start: the slug the user chose, when the spawner has a profile list (which
    KubeSpawner has checked it against), else `default`; never free text from the user."""
    if profile_list_set and isinstance(chosen, str) and chosen:
        _initialize(chosen)
        return chosen
    return DEFAULT_PROFILE


def spark_cluster_start(profile: str, outcome: str) -> None:
    SPARK_CLUSTER_STARTS.labels(profile, outcome).inc()


def spark_cluster_create(profile: str, outcome: str, seconds: float) -> None:
    SPARK_CLUSTER_CREATE_SECONDS.labels(profile, outcome).observe(seconds)


def spark_cluster_delete(outcome: str, seconds: float) -> None:
    SPARK_CLUSTER_DELETE_SECONDS.labels(outcome).observe(seconds)


def minio_fetch(profile: str, outcome: str, seconds: float) -> None:
    MINIO_FETCH_SECONDS.labels(profile, outcome).observe(seconds)


def init_run(profile: str, result: str, exit_status: int, seconds: float | None) -> None:
    INIT_RUNS.labels(profile, result, str(exit_status)).inc()
    if seconds is not None:
        INIT_SECONDS.labels(profile, result).observe(seconds)


def spawn_parts(profile: str, parts: Iterable[tuple[str, float]]) -> None:
    for part, seconds in parts:
        SPAWN_PART_SECONDS.labels(profile, part).observe(seconds)


def server_object(kind: str, operation: str, outcome: str, seconds: float) -> None:
    SERVER_OBJECT_SECONDS.labels(kind, operation, outcome).observe(seconds)


def proxy_route_restore(ok: bool) -> None:
    PROXY_ROUTE_RESTORES.labels("ok" if ok else "failed").inc()


def server_stopped(by: str) -> None:
    """Count a stop the hub accepted; `by` is one of STOPPERS (a revocation's stop calls this with
    "revocation": it is the hub's own, not a request the hub's API sees)."""
    if by not in STOPPERS:
        raise ValueError(f"unknown stopper {by!r}: one of {', '.join(STOPPERS)}")
    SERVER_STOPS.labels(by).inc()


Checked = TypeVar("Checked")


def timed_auth2_check(
    invalid: type[BaseException],
) -> Callable[[Callable[..., Awaitable[Checked]]], Callable[..., Awaitable[Checked]]]:
    """A decorator for Auth2Client.check: its latency, by outcome: valid (it returned), invalid (it
    raised `invalid`), unavailable (any other error). A cancelled check (the browser went away) says
    nothing about Auth2 and is not counted."""

    def decorate(check: Callable[..., Awaitable[Checked]]) -> Callable[..., Awaitable[Checked]]:
        @wraps(check)
        async def timed(*args: Any, **kwargs: Any) -> Checked:
            started = monotonic()
            outcome: str | None = "unavailable"
            try:
                result = await check(*args, **kwargs)
                outcome = "valid"
                return result
            except invalid:
                outcome = "invalid"
                raise
            except asyncio.CancelledError:
                outcome = None
                raise
            finally:
                if outcome is not None:
                    AUTH2_CHECK_SECONDS.labels(outcome).observe(monotonic() - started)

        return timed

    return decorate
