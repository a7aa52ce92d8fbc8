"""A worker whose kept database connection the server dropped (a restart, a failover, an
operator's pg_terminate_backend) runs its next run on a new connection.

Workers check a kept connection without a round trip (config.celery): the socket of one
the server hung up on is readable. Were that check missing, with Django's `SELECT 1` check
off in workers, the run below would fail on the dead connection.
"""

from __future__ import annotations

import pytest
from django.db import connection

from agents.models import RunStatus
from agents.services import BindingSpec, agent_create, agent_run_create
from credentials.services import credential_create
from tests.audit.tamper import postgresql_only

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, postgresql_only]


def _end_other_sessions() -> int:
    """End every other client session on the test database (the worker's among them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        return int(cursor.fetchone()[0])


def test_a_run_after_the_server_ended_the_workers_connection_succeeds(
    personas, celery_worker, endpoint, canary
):
    credential = credential_create(
        org=personas.org, acting_user=personas.admin, name="reconnect-key", secret=canary
    )
    agent = agent_create(
        org=personas.org,
        acting_user=personas.admin,
        name="reconnect",
        config={"method": "GET", "url": endpoint.url},
        bindings=[BindingSpec("auth", credential.id, "header", "Authorization", "Bearer {secret}")],
    )
    before = agent_run_create(agent=agent, acting_user=None)
    assert celery_worker.wait_for_run(before.id).status == RunStatus.SUCCEEDED

    assert _end_other_sessions() >= 1  # the worker kept its connection after that run

    after = agent_run_create(agent=agent, acting_user=None)
    run = celery_worker.wait_for_run(after.id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert [r.headers["Authorization"] for r in endpoint.received] == [f"Bearer {canary}"] * 2
