"""Whether a navigation to /hub/login started on this site (same_site): Fetch Metadata, then Origin."""

from __future__ import annotations

import pytest
from berdl_hub.same_site import origin_of, started_here

HUB = origin_of("https://Hub.Berdl.kbase.us/hub/")


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),  # KBase's login page, another host of kbase.us
        ({"Sec-Fetch-Site": "none"}, True),  # typed, a bookmark
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "cross-site", "Origin": "https://hub.berdl.kbase.us"}, False),  # the first wins
        ({"Origin": "https://hub.berdl.kbase.us"}, True),
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({}, None),  # says nothing
    ],
)
def test_fetch_metadata_then_origin(headers: dict[str, str], verdict: bool | None) -> None:
    assert started_here(headers, HUB) is verdict


def test_without_a_public_url_no_origin_is_this_sites() -> None:
    assert started_here({"Origin": "https://hub.berdl.kbase.us"}, "") is False
