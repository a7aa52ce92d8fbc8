"""Celery tasks: thin, ids in, status out. Never a secret in arguments or results."""

from __future__ import annotations

import logging

from celery import shared_task

from agents.services import agent_run_execute, agent_run_fail

logger = logging.getLogger(__name__)


@shared_task(name="agents.run_agent", acks_late=True, ignore_result=False)
def run_agent(run_id: str) -> str:
    try:
        return agent_run_execute(run_id=run_id)
    except Exception:
        # A bug or an outage mid-run must not leave the run "queued" or "running" for ever:
        # record it as failed (audited) and log the traceback through the redacting handlers.
        # Not re-raised: Celery would store the exception's text in the result backend,
        # which no redaction covers. Not retried either: the run may have called its target.
        logger.exception("agent run stopped on an unexpected error")
        agent_run_fail(run_id=run_id, error="the run stopped on an internal error")
        return "failed"


@shared_task(name="agents.ping")
def ping() -> str:
    """A no-op round trip: the baseline for bench/run_latency.py and a worker liveness probe."""
    return "pong"
