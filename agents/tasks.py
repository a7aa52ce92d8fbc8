"""Celery tasks: thin, ids in, status out. Never a secret in arguments or results."""

from __future__ import annotations

from celery import shared_task

from agents.services import agent_run_execute


@shared_task(name="agents.run_agent", acks_late=True, ignore_result=False)
def run_agent(run_id: str) -> str:
    return agent_run_execute(run_id=run_id)


@shared_task(name="agents.ping")
def ping() -> str:
    """A no-op round trip: the baseline for bench/run_latency.py and a worker liveness probe."""
    return "pong"
