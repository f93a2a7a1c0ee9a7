"""BERDLProxy: JupyterHub's ConfigurableHTTPProxy, waiting a bounded time for a proxy that is not up yet.

The proxy runs in its own pod, and Kubernetes may start it after the hub, or restart it. JupyterHub's
own client retries answers of 500 and above, but a refused connection (or a Service name that does not
resolve yet) fails at once: at start the hub dies with a ConnectionRefusedError traceback. This class
retries those too, for `connect_timeout` seconds; if the proxy never answered since the hub started, the
hub then exits with one line, and Kubernetes' restart tries again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.utils import exponential_backoff
from traitlets import Float


class BERDLProxy(ConfigurableHTTPProxy):
    connect_timeout = Float(
        60.0,
        config=True,
        help="""Seconds to keep trying a proxy API that refuses connections or whose host does not resolve.

        At the hub's start, a proxy that does not answer in this time makes the hub exit with status 1 and
        one line; later, the call fails with the connection's error, as ConfigurableHTTPProxy's would.
        """,
    )

    _answered = False  # whether the proxy has answered once since this hub started

    async def api_request(self, path: str, method: str = "GET", body: Any = None, client: Any = None) -> Any:
        refused: list[OSError] = []

        async def attempt() -> Any:
            try:
                return await super(BERDLProxy, self).api_request(
                    path, method=method, body=body, client=client
                )
            except asyncio.TimeoutError:  # ConfigurableHTTPProxy's own retries of 5xx ran out
                raise
            except OSError as error:  # ConnectionRefusedError, socket.gaierror, ...
                if not refused:
                    self.log.warning(
                        "the proxy's API at %s does not answer (%s); trying again for up to %.0f s",
                        self.api_url,
                        error,
                        self.connect_timeout,
                    )
                refused.append(error)
                return False  # exponential_backoff tries again

        try:
            answer = await exponential_backoff(
                attempt, f"the proxy's API at {self.api_url} did not answer", timeout=self.connect_timeout
            )
        except asyncio.TimeoutError:
            if not refused:
                raise
            if not self._answered:
                self.log.critical(
                    "the proxy's API at %s did not answer in %.0f s (%s): is the proxy running? Exiting.",
                    self.api_url,
                    self.connect_timeout,
                    refused[-1],
                )
                raise SystemExit(1) from None
            raise refused[-1] from None
        self._answered = True
        return answer
