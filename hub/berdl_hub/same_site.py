"""Whether a request to `/hub/login` was started on KBase's or the hub's own site (login CSRF).

The hub logs a browser in from the `kbase_session` cookie it carries. A page on another site that sends
the browser to `/hub/login` would log it in, and start a server, with no act of its user. Browsers say
where a navigation started: `Sec-Fetch-Site` (Fetch Metadata, sent by every current browser to HTTPS
sites and to localhost) is `same-origin`, `same-site` (KBase's login page on another host of the same
domain), `none` (a typed address, a bookmark) or `cross-site`. Where it is missing, `Origin`, when sent,
names the page's origin. A request with neither says nothing (a browser too old for Fetch Metadata, or
not a browser): the login handler then asks for a round trip through a page of its own (see auth.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

STARTED_HERE = frozenset({"same-origin", "same-site", "none"})


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower case."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def started_here(headers: Mapping[str, str], public_origin: str) -> bool | None:
    """True for a navigation started on this site (or KBase's, the same site), False for one started
    elsewhere, None when the request does not say."""
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.strip().lower() in STARTED_HERE
    origin = headers.get("Origin")
    if origin is not None:
        return bool(public_origin) and origin.strip().lower() == public_origin
    return None
