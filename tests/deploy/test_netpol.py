"""The policy evaluator of these tests follows the NetworkPolicy semantics it is used to check."""

from __future__ import annotations

from typing import Any

from tests.deploy.netpol import Peer, allowed

WEB = Peer("web", "10.0.0.1", {"app": "web"}, "a", {"http": 8080})
CLIENT = Peer("client", "10.0.0.2", {"app": "client"}, "a")
ELSEWHERE = Peer("client elsewhere", "10.0.1.2", {"app": "client"}, "b")
OUTSIDE = Peer("outside", "203.0.113.9")


def policy(spec: dict[str, Any], namespace: str = "a") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}


def test_a_pod_no_policy_selects_is_open_both_ways() -> None:
    only_client = [policy({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Ingress"]})]
    assert allowed(only_client, OUTSIDE, WEB, 1234)
    assert allowed(only_client, WEB, OUTSIDE, 1234)


def test_a_pod_selector_alone_means_the_policys_namespace() -> None:
    rule = {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}
    policies = [policy({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [rule]})]
    assert allowed(policies, CLIENT, WEB, 8080)
    assert not allowed(policies, ELSEWHERE, WEB, 8080)
    assert not allowed(policies, CLIENT, WEB, 8081)  # the named port is 8080 only
    assert not allowed(policies, CLIENT, WEB, 8080, "UDP")


def test_both_sides_must_allow_and_except_carves_out_of_a_block() -> None:
    ingress = policy({"podSelector": {}, "ingress": [{}]})  # everything in
    egress = policy(
        {
            "podSelector": {"matchLabels": {"app": "client"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["203.0.113.0/24"]}}]}],
        }
    )
    assert allowed([ingress], CLIENT, WEB, 8080)
    assert allowed([ingress, egress], CLIENT, Peer("public", "198.51.100.1"), 443)
    assert not allowed([ingress, egress], CLIENT, OUTSIDE, 443)
    assert allowed([ingress, egress], CLIENT, WEB, 8080)  # 10.0.0.1 is in 0.0.0.0/0, as some plugins match
    assert not allowed([ingress, egress], CLIENT, Peer("v6", "2001:db8::1"), 443)
