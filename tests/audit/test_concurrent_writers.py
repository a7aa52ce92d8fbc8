"""Writers in several processes and threads, each on its own database connection, append to
one org's chain at the same moment: the chain stays gapless and verifies."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import connection, connections

from agents.worker_process import database_url
from audit.chain import chain_key
from audit.models import ActorType, AuditEvent
from audit.services import Actor, record_event
from audit.verification import verify_chain

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 4
PROCESSES = 2
EACH = 25


def _start_writer_processes(org_id: str) -> list[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "EVERESTHOOD_ENV_FILE": "",
        "DEBUG": "false",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.audit.append_events", org_id, str(EACH)],
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    return processes


def test_concurrent_writers_in_processes_and_threads_keep_one_gapless_chain(personas):
    org = personas.org
    processes = _start_writer_processes(str(org.id))
    start = threading.Barrier(THREADS + 1)

    def write(number: int) -> None:
        try:
            start.wait(timeout=30)
            actor = Actor(ActorType.WORKER, f"thread-{number}", "thread")
            for n in range(EACH):
                record_event(action="test.thread", org=org, actor=actor, metadata={"n": n})
                # Another org's chain at the same time: it must not wait on this one.
                record_event(action="test.thread", org=personas.other_org, actor=actor)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(write, number) for number in range(THREADS)]
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        start.wait(timeout=30)
        for future in futures:
            future.result(timeout=120)  # re-raises a writer's exception here
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0] * PROCESSES, outputs
    chain = AuditEvent.objects.filter(org=org).order_by("sequence")
    sequences = list(chain.values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))  # the setup's events, then ours
    assert chain.filter(action="test.thread").count() == THREADS * EACH
    assert chain.filter(action="test.process").count() == PROCESSES * EACH
    for chain_org in (org, personas.other_org):
        report = verify_chain(chain_key(chain_org.id))
        assert report.ok, report.first_break
    assert (
        AuditEvent.objects.filter(org=personas.other_org, action="test.thread").count()
        == THREADS * EACH
    )
