"""The proxy watcher: a hub service that gives a restarted proxy its routes back within seconds.

configurable-http-proxy keeps its routing table in memory. When its pod restarts it comes back with only
its default route, and JupyterHub itself restores the rest only at its next `last_activity_interval`
round (300 s by default): until then every user gets "Redirect loop detected".

This service asks the hub for the proxy's routes (`GET /hub/api/proxy`, which the hub reads from the
proxy) every `--interval` seconds. The hub always keeps a route of its own, marked `{"hub": true}`; a
table without it is a proxy that lost its routes, and the watcher asks the hub to sync them
(`POST /hub/api/proxy`). Its token needs only the `proxy` scope. The cost is one request per interval,
in which the hub reads the proxy's table, and no database write of its own (the hub records a token's
activity at most every 30 s), unlike a shorter `last_activity_interval`, which writes activity to the
database at every round.

Run by the hub as a managed service: `python -m berdl_hub.proxy_watch` (JupyterHub gives it
JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any

import click

SERVICE_NAME = "berdl-proxy-watch"
SCOPES = ["proxy"]
DEFAULT_INTERVAL = 2.0

log = logging.getLogger(SERVICE_NAME)


class HubAPI:
    """The two calls of the hub's proxy API the watcher makes."""

    def __init__(self, api_url: str, token: str, timeout: float) -> None:
        self.url = api_url.rstrip("/") + "/proxy"
        self.headers = {"Authorization": f"token {token}"}
        self.timeout = timeout

    def _call(self, method: str) -> Any:
        request = urllib.request.Request(self.url, method=method, headers=self.headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def routes(self) -> dict[str, Any]:
        routes: dict[str, Any] = self._call("GET")
        return routes

    def sync(self) -> None:
        self._call("POST")


def has_hub_route(routes: dict[str, Any]) -> bool:
    """Whether the table holds the route the hub adds for itself (a restarted proxy has none)."""
    return any((route.get("data") or {}).get("hub") for route in routes.values())


def check_once(hub: HubAPI) -> bool:
    """One look at the proxy's table; syncs it when the hub's route is missing. True when it synced."""
    routes = hub.routes()
    if has_hub_route(routes):
        return False
    started = time.monotonic()
    hub.sync()
    log.warning(
        "the proxy had lost its routes (%d left; restarted?): the hub restored them in %.2f s",
        len(routes),
        time.monotonic() - started,
    )
    return True


def watch(hub: HubAPI, interval: float) -> None:
    """Check forever; a hub or proxy that does not answer is logged once per outage, then checked again."""
    failing = False
    while True:
        try:
            check_once(hub)
            if failing:
                log.info("the hub's proxy API answers again")
            failing = False
        except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts, a non-JSON answer
            if not failing:
                log.warning("cannot check the proxy's routes through the hub: %s", error)
            failing = True
        time.sleep(interval)


@click.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_INTERVAL,
    show_default=True,
    help="Seconds between two looks at the proxy's routes: the longest a restarted proxy waits for them.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds one call of the hub's API may take (a sync of many routes takes longest).",
)
def main(interval: float, timeout: float) -> None:
    """Watch the proxy's routes through the hub's API and restore them when the proxy lost them."""
    logging.basicConfig(level=logging.INFO, format=f"[{SERVICE_NAME}] %(levelname)s %(message)s")
    try:
        api_url, token = os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
    except KeyError as missing:
        raise click.UsageError(f"{missing.args[0]} is not set: run this as a JupyterHub service") from None
    log.info("checking the proxy's routes every %s s", interval)
    watch(HubAPI(api_url, token, timeout), interval)


if __name__ == "__main__":
    main()
