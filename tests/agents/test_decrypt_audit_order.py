"""A secret's decryption is on the audit trail, committed, before the tool sends the secret.

The decrypt event is the record that a worker held the plaintext; if the worker dies during
the tool's call, the event must already be there. The event's last writes travel with the
COMMIT of the claim's transaction (config.statements.sent_by_commit); this holds the commit
before the call. The endpoint looks, from a connection of its own, at what has committed
when the request carrying the secret arrives.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

import pytest
from django.db import connection

from agents.demo_endpoint import CredentialCheckingEndpoint
from agents.models import RunStatus
from agents.services import agent_run_create, agent_run_execute
from audit.models import AuditEvent
from tests.conftest import bearer_agent

pytestmark = pytest.mark.django_db(transaction=True)  # other connections see what committed


class _LooksAtTheTrail(CredentialCheckingEndpoint):
    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self.target_id = ""
        self.committed_on_arrival: list[list[str]] = []

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        try:  # this server thread's own connection: it sees only what has committed
            self.committed_on_arrival.append(
                list(
                    AuditEvent.objects.filter(target_id=self.target_id)
                    .order_by("sequence")
                    .values_list("action", flat=True)
                )
            )
        finally:
            connection.close()
        super()._handle(request)


def test_the_decrypt_event_has_committed_when_the_secret_arrives(
    personas, canary, in_process_worker
):
    endpoint = _LooksAtTheTrail(canary)
    with endpoint:
        credential, agent = bearer_agent(personas, endpoint.url, canary, name="audit-order")
        endpoint.target_id = str(credential.id)
        run = agent_run_create(agent=agent, acting_user=personas.admin)

        assert agent_run_execute(run_id=run.id) == RunStatus.SUCCEEDED

    assert endpoint.received[-1].headers["Authorization"] == f"Bearer {canary}"
    assert endpoint.committed_on_arrival == [
        ["credential.create", "credential.grant", "credential.decrypt"]
    ]
