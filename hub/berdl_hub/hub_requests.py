"""What the hub sees of its own services' work, counted as it answers them: the idle culler's stops and
the proxy watcher's route restores.

`jupyterhub-idle-culler` and `berdl-proxy-watch` are processes of their own with no metrics endpoint,
and each acts only through the hub's REST API with its own service token: the culler stops a server with
`DELETE /hub/api/users/NAME/server`, the watcher restores a restarted proxy's routes with
`POST /hub/api/proxy`. So the hub counts them where it answers those requests, in tornado's
`log_function` (JupyterHub's own request log and metrics still run first): one scrape target, the hub's
`/hub/metrics`, and no port or token more. A stop is counted once the request really stopped a server
(JupyterHub answers the DELETE of a server that is not running with 204 too), by who asked
(metrics.STOPPERS): the culler's token, the server's own user, another user, another service. Stops the
hub makes itself (a revoked KBase token) are not requests: that code counts them with
`metrics.server_stopped("revocation")`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from . import metrics, upstream

log = logging.getLogger(__name__)

#: Answers to a DELETE of a server that may mean the hub stopped it or is stopping it (upstream.stopped_by
#: tells a stop from a server that was not running).
_STOPPED = frozenset({202, 204})


def stopper(kind: str, name: str, server_owner: str, culler: str) -> str:
    """Who asked for a stop, as a metrics label (metrics.STOPPERS)."""
    if kind == "service":
        return "culler" if name == culler else "service"
    return "user" if name == server_owner else "admin"


def count(handler: Any, *, culler: str, proxy_watch: str) -> None:
    """Count a finished request when it is a stop of a server or a sync of the proxy's routes by the
    watcher."""
    server_api, proxy_api = upstream.is_server_api(handler), upstream.is_proxy_api(handler)
    if not (server_api or proxy_api):
        return
    who = upstream.requester(handler)
    if who is None:
        return
    kind, name = who
    method, status = handler.request.method, handler.get_status()
    if server_api and method == "DELETE" and status in _STOPPED and handler.path_args:
        began = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(
            seconds=handler.request.request_time()
        )
        if upstream.stopped_by(handler, began):
            metrics.server_stopped(stopper(kind, name, str(handler.path_args[0]), culler))
    elif proxy_api and method == "POST" and (kind, name) == ("service", proxy_watch):
        metrics.proxy_route_restore(status < 400)


def log_function(*, culler: str, proxy_watch: str) -> Callable[[Any], None]:
    """tornado's `log_function` for the hub: JupyterHub's own, then BERDL's counts (which never keep a
    request from being logged)."""

    def log_request(handler: Any) -> None:
        upstream.jupyterhub_log_request(handler)
        try:
            count(handler, culler=culler, proxy_watch=proxy_watch)
        except Exception:
            log.exception("counting a request for the metrics failed")

    return log_request
