"""A run is claimed once: a redelivered message, or several workers given the same message
at once, never run it twice (the claim is an UPDATE of a queued run; its row lock makes the
others wait, then find the run taken; on SQLite the IMMEDIATE transactions serialise them)."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connections

from agents.models import AgentRun, RunStatus
from agents.services import agent_run_create, agent_run_execute
from tests.conftest import bearer_agent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def agent(personas, endpoint, canary, in_process_worker):
    """An agent bound to the endpoint's credential, run by this process."""
    return bearer_agent(personas, endpoint.url, canary, name="claim", user=personas.owner)[1]


def test_a_redelivered_message_finds_the_run_taken(agent, endpoint):
    run = agent_run_create(agent=agent, acting_user=None)
    assert agent_run_execute(run_id=run.id) == RunStatus.SUCCEEDED
    finished_at = AgentRun.objects.get(pk=run.id).finished_at

    assert agent_run_execute(run_id=run.id) == RunStatus.SUCCEEDED  # its status, not a rerun
    assert len(endpoint.received) == 1
    assert AgentRun.objects.get(pk=run.id).finished_at == finished_at


def test_a_message_for_a_missing_run_runs_nothing(agent, endpoint):
    assert agent_run_execute(run_id="00000000-0000-0000-0000-000000000000") == "missing"
    assert endpoint.received == []


def test_workers_given_the_same_message_at_once_run_it_once(agent, endpoint):
    for _ in range(5):
        run = agent_run_create(agent=agent, acting_user=None)
        calls_before = len(endpoint.received)
        start = threading.Barrier(3)
        statuses: list[str] = []

        def worker(run_id: uuid.UUID, start: threading.Barrier, statuses: list[str]) -> None:
            try:
                start.wait(timeout=30)
                statuses.append(agent_run_execute(run_id=run_id))
            finally:
                connections.close_all()

        threads = [
            threading.Thread(target=worker, args=(run.id, start, statuses)) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        # One claims and runs it; the others, waiting on its row lock, find it taken (still
        # running, or already succeeded, depending on when they got there).
        assert statuses.count(RunStatus.SUCCEEDED) >= 1
        assert sorted(set(statuses)) in (
            [RunStatus.RUNNING, RunStatus.SUCCEEDED],
            [RunStatus.SUCCEEDED],
        )
        assert len(endpoint.received) - calls_before == 1
