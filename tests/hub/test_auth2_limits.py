"""The bound on the Auth2 checks a client causes (auth2_limits): who the client is behind proxies, and
its bucket. Pure functions, no hub."""

from __future__ import annotations

import pytest
from berdl_hub.auth2_limits import PRIVATE_NETWORKS, ClientRates, client_address, networks

TRUSTED = networks(PRIVATE_NETWORKS)


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.1.2.3", None, "10.1.2.3"),  # a trusted peer with no header is the client
        ("10.1.2.3", "203.0.113.7", "203.0.113.7"),  # the proxy says who it saw
        ("10.1.2.3", "198.51.100.1, 203.0.113.7, 10.9.9.9", "203.0.113.7"),  # an ingress, then the proxy
        ("10.1.2.3", "forged, 203.0.113.7", "203.0.113.7"),  # what the client wrote stays unread
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer is the client, whatever it sends
        ("10.1.2.3", "10.4.4.4, 10.5.5.5", "10.4.4.4"),  # all trusted: the first there is
        ("10.1.2.3", " , ", "10.1.2.3"),  # an empty header
    ],
)
def test_the_client_is_the_first_untrusted_address_walking_back(
    peer: str, forwarded: str | None, client: str
) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client


def test_a_single_address_or_a_network_and_a_bad_one_named() -> None:
    assert [str(n) for n in networks(["127.0.0.1", "10.0.0.0/8"])] == ["127.0.0.1/32", "10.0.0.0/8"]
    with pytest.raises(ValueError, match="not-a-network"):
        networks(["not-a-network"])


def test_a_bucket_per_client_refills_over_a_minute() -> None:
    now = [0.0]
    rates = ClientRates(3, clock=lambda: now[0])
    assert [rates.allow("a") for _ in range(4)] == [True, True, True, False]
    assert rates.allow("b")  # another client has its own
    now[0] += 20  # a third of a minute: one check back
    assert [rates.allow("a") for _ in range(2)] == [True, False]
    now[0] += 600  # never more than the bucket holds
    assert [rates.allow("a") for _ in range(4)] == [True, True, True, False]


def test_no_bound_when_the_rate_is_zero() -> None:
    rates = ClientRates(0)
    assert all(rates.allow("a") for _ in range(100))


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from berdl_hub import auth2_limits

    monkeypatch.setattr(auth2_limits, "MAX_CLIENTS", 10)
    rates = ClientRates(1, clock=lambda: 0.0)
    for n in range(50):
        assert rates.allow(f"client-{n}")
    assert len(rates._buckets) == 10
