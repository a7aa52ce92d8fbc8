"""The demo endpoint keeps connections alive, as the APIs agents call do, and a stopped
endpoint answers no pooled connection."""

from __future__ import annotations

import requests

from agents.demo_endpoint import CredentialCheckingEndpoint


def test_calls_share_one_connection_and_a_body_does_not_spill_into_the_next(canary):
    with CredentialCheckingEndpoint(canary) as endpoint, requests.Session() as session:
        auth = {"Authorization": f"Bearer {canary}"}
        first = session.post(endpoint.url, headers=auth, data="x" * 10_000, timeout=10)
        second = session.get(endpoint.url, headers=auth, timeout=10)
        refused = session.get(endpoint.url, headers={"Authorization": "Bearer wrong"}, timeout=10)
        assert [first.status_code, second.status_code, refused.status_code] == [200, 200, 401]
        assert [r.method for r in endpoint.received] == ["POST", "GET", "GET"]
        assert len({r.client_port for r in endpoint.received}) == 1  # one connection


def test_a_stopped_endpoint_closes_the_connections_it_kept(canary):
    session = requests.Session()
    with CredentialCheckingEndpoint(canary) as endpoint:
        url = endpoint.url
        assert session.get(url, headers={"Authorization": f"Bearer {canary}"}, timeout=10).ok
    # Its handler is gone: the pooled connection reaches nothing (a new endpoint given the
    # same port would get a new connection, never the old handler and its secret).
    try:
        answer = session.get(url, headers={"Authorization": f"Bearer {canary}"}, timeout=10)
    except requests.ConnectionError:
        answer = None
    assert answer is None
    session.close()
