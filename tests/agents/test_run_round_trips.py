"""How many statements a run sends to PostgreSQL: a count, never a timing.

Each statement is a round trip, and round trips are most of a run's latency on PostgreSQL
(docs/benchmarks.md, bench/run_latency.py). The writes whose results nobody reads travel with
the next statement that is read (config.statements), so the run path sends:

- queueing: the run's INSERT with the event's checks and chain-head lock, then the head's
  move with the event's INSERT (2);
- the worker: the claim's UPDATE with the read of the run, its agent and org; the bindings
  with their credentials and use grants; for the decrypt event, the credentials' last-used
  UPDATE with the head lock, then the head's move with the event; for the finish event, the
  run's outcome UPDATE with the head lock, then the head's move with the event (6).

Each side's transactions are counted too: one to queue, two to run (the decrypt event
commits before the tool runs, the outcome after). Their BEGINs take no round trip of their
own (config.postgresql), which libpq's protocol trace confirms: 3 round trips to queue, 8 to
run.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import AgentRun, RunStatus
from agents.services import agent_run_create, agent_run_execute
from audit.models import AuditEvent
from tests.audit.tamper import postgresql_only
from tests.conftest import bearer_agent
from tests.pg_trace import protocol_trace

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]


def _sent(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"][:100] for query in captured.captured_queries]


def _statements(captured: CaptureQueriesContext) -> tuple[int, int]:
    """(transactions, statements besides BEGIN and COMMIT) sent."""
    sent = [query["sql"] for query in captured.captured_queries]
    commits = sent.count("COMMIT")
    assert sent.count("BEGIN") == commits
    return commits, len(sent) - 2 * commits


def test_a_run_sends_two_statements_to_queue_and_six_to_run(
    personas, endpoint, canary, in_process_worker
):
    credential, agent = bearer_agent(
        personas, endpoint.url, canary, name="round-trips", user=personas.owner
    )

    with CaptureQueriesContext(connection) as queued, protocol_trace(connection) as queue_wire:
        run = agent_run_create(agent=agent, acting_user=personas.owner)
    with CaptureQueriesContext(connection) as ran, protocol_trace(connection) as run_wire:
        status = agent_run_execute(run_id=run.id)

    # The path did all it should, in these few statements.
    assert status == RunStatus.SUCCEEDED
    assert endpoint.received[-1].headers["Authorization"] == f"Bearer {canary}"
    run = AgentRun.objects.get(pk=run.id)
    assert run.started_at is not None
    assert run.finished_at is not None
    assert list(
        AuditEvent.objects.filter(job_id="", target_id__in=[str(run.id), str(credential.id)])
        .order_by("sequence")
        .values_list("action", flat=True)
    )[-3:] == ["agent_run.queue", "credential.decrypt", "agent_run.finish"]

    assert _statements(queued) == (1, 2), _sent(queued)
    assert _statements(ran) == (2, 6), _sent(ran)
    # On the wire, each transaction's BEGIN travels with its first statement
    # (config.postgresql): the statements and the COMMITs are all the round trips there are.
    assert queue_wire.round_trips == 2, queue_wire.queries
    assert run_wire.round_trips == 6, run_wire.queries
    assert all(q.startswith("BEGIN; ") for q in queue_wire.queries[:1] + run_wire.queries[:1])
