"""A bound on the Auth2 checks one client can cause: so many a minute, per client.

Every check of a token the hub did not choose (a browser's `kbase_session` at `/hub/login`, a token a
server pushes) costs two Auth2 calls. A loop, in a browser or in a user's own code, must not turn the hub
into a way to flood Auth2, so each client has a budget: a bucket of `per_minute` checks that refills
continuously. The hub answers a client past its budget without asking Auth2.

Who "the client" is behind the proxy: the hub's own connection comes from configurable-http-proxy (or,
for a user pod, from that pod). The proxy appends the address it saw to `X-Forwarded-For`; an ingress in
front of it does the same before it. The client is found by walking that list from its end, starting at
the connection's own peer, for as long as the address at hand is a trusted proxy's: the first address
that is not one is the client. A peer that is not trusted is the client itself, whatever headers it
sends, so a user pod that connects to the hub directly cannot choose its key. (tornado's `remote_ip`,
which JupyterHub rewrites from `X-Forwarded-For` and `X-Real-Ip` for every peer, is not used: any client
sets those headers.)
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

#: The networks a deployment's proxies live in, by default: loopback, the private ranges, and the shared
#: range some cluster networks use. Pods (the proxy's, an ingress's) have such addresses.
PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
)
#: How many clients are remembered at once; the longest idle is forgotten first (a forgotten client
#: starts again with a full bucket, the cost of a bounded memory).
MAX_CLIENTS = 10_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(texts: Iterable[str]) -> list[Network]:
    """The networks written as `10.0.0.0/8` or a single address (`10.1.2.3`); ValueError names a bad one."""
    return [ipaddress.ip_network(text.strip(), strict=False) for text in texts]


def _trusted(address: str, trusted: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(peer: str, forwarded_for: str | None, trusted: list[Network]) -> str:
    """The client of a request that came from `peer` with the `X-Forwarded-For` header `forwarded_for`."""
    client = peer
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    while hops and _trusted(client, trusted):
        client = hops.pop()
    return client


class ClientRates:
    """Each client's bucket of checks: `per_minute` at most, refilled continuously."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)

    def allow(self, client: str) -> bool:
        """Take one check from `client`'s bucket; False when it is empty (nothing is taken then)."""
        if self.per_minute <= 0:
            return True  # no bound
        now = self.clock()
        tokens, then = self._buckets.pop(client, (self.per_minute, now))
        tokens = min(self.per_minute, tokens + (now - then) * self.per_minute / 60)
        allowed = tokens >= 1
        self._buckets[client] = (tokens - 1 if allowed else tokens, now)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return allowed
