"""A user's MinIO keys for one start, from the governance API, with the operator's failure policy."""

from __future__ import annotations

import logging
import time
from typing import Any

from . import metrics
from .errors import SpawnRefused
from .services import GovernanceClient, MinioCredentials, ServiceError


async def fetch(
    client: GovernanceClient | None,
    token: str | None,
    *,
    fail_on_error: bool,
    log: logging.Logger | logging.LoggerAdapter[Any],
    name: str,
    profile: str = metrics.DEFAULT_PROFILE,
) -> MinioCredentials | None:
    """The user's keys (None without a governance API); when they cannot be had, the spawn is refused
    with the reason, or goes on without them and a warning in the hub's log (`name`: the server)."""
    if client is None:
        return None
    started = time.monotonic()
    try:
        if not token:
            raise ServiceError(GovernanceClient.service, "auth", "no KBase token in the auth state")
        keys = await client.credentials(token)
        metrics.minio_fetch(profile, "ok", time.monotonic() - started)
        return keys
    except ServiceError as exc:
        metrics.minio_fetch(profile, metrics.call_outcome(exc), time.monotonic() - started)
        if fail_on_error:
            raise SpawnRefused(f"Your data-lake (MinIO) credentials could not be fetched: {exc}.") from None
        log.warning("Starting %s without MinIO credentials: %s", name, exc)
        return None
