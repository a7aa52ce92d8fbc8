"""A worker whose kept database connection the server dropped (a restart, a failover, an
operator's pg_terminate_backend) runs its next run on a new connection.

Workers check a kept connection without a round trip (config.celery): the socket of one
the server hung up on is readable. Were that check missing, with Django's `SELECT 1` check
off in workers, the run below would fail on the dead connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading

import pytest
from celery import signals
from django.db import connection

from agents.models import AgentRun, RunStatus
from agents.services import agent_run_create
from agents.tasks import ping, run_agent
from config import celery as worker
from config import redaction
from tests.audit.tamper import postgresql_only
from tests.conftest import bearer_agent

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]


def _end_other_sessions() -> int:
    """End every other client session on the test database (the worker's among them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.worker
def test_a_run_after_the_server_ended_the_workers_connection_succeeds(
    personas, celery_worker, endpoint, canary
):
    _, agent = bearer_agent(personas, endpoint.url, canary, name="reconnect")
    before = agent_run_create(agent=agent, acting_user=None)
    assert celery_worker.wait_for_run(before.id).status == RunStatus.SUCCEEDED

    assert _end_other_sessions() >= 1  # the worker kept its connection after that run

    after = agent_run_create(agent=agent, acting_user=None)
    run = celery_worker.wait_for_run(after.id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert [r.headers["Authorization"] for r in endpoint.received] == [f"Bearer {canary}"] * 2


class _FailoverProxy:
    """A TCP relay to PostgreSQL that can play a failover that moved the database's address:
    the old server's end never reaches the client (no FIN: its socket stays quiet), and the
    client's next packet is answered with a reset, as by a host that knows no such
    connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.moved: set[socket.socket] = set()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.pairs.append((client, upstream))
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(client, upstream), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        while data := client.recv(65536):
            if client in self.moved:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # a reset
                return
            upstream.sendall(data)

    def _down(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while (data := upstream.recv(65536)) and client not in self.moved:
                client.sendall(data)

    def fail_over(self) -> None:
        for client, upstream in self.pairs:
            self.moved.add(client)
            upstream.shutdown(socket.SHUT_RDWR)
        self.pairs = []

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def through_failover_proxy():
    """This process's connection goes through a _FailoverProxy, with the worker's checks."""
    saved = dict(connection.settings_dict)
    proxy = _FailoverProxy(int(saved["PORT"] or 5432))
    connection.close()
    connection.settings_dict["PORT"] = proxy.port
    worker._check_connections_without_a_round_trip()  # as at worker start
    yield proxy
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)
    proxy.close()


def test_a_run_whose_kept_connection_died_without_a_word_claims_again(
    personas, through_failover_proxy, endpoint, canary, in_process_worker
):
    # In this process (the worker's code, without its process): the socket check cannot see
    # this, so the claim's statement fails and the run claims again on a new connection.
    _, agent = bearer_agent(personas, endpoint.url, canary, name="failover")
    queued = agent_run_create(agent=agent, acting_user=None)
    connection.ensure_connection()
    through_failover_proxy.fail_over()
    worker._drop_unusable_connections()  # task_prerun's check: the socket looks fine
    assert connection.connection is not None

    assert run_agent(str(queued.id)) == RunStatus.SUCCEEDED
    run = AgentRun.objects.get(pk=queued.id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert [r.headers["Authorization"] for r in endpoint.received] == [f"Bearer {canary}"]


def test_the_check_and_the_job_scope_hold_for_descriptors_past_1023():
    # select() refuses descriptors from 1024 on; a worker with many sockets open gets there.
    connection.close()
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        connection.ensure_connection()
        assert connection.connection.fileno() >= 1024
        errors = [
            result
            for _, result in signals.task_prerun.send(sender=None, task_id="job-fd", task=ping)
            if isinstance(result, Exception)
        ]
        assert errors == []
        assert connection.connection is not None  # a healthy connection is kept
        redaction.register_secret("secret-of-job-fd")
        signals.task_postrun.send(sender=None, task_id="job-fd", task=ping)
        assert "job-fd" not in worker._task_scopes
        assert redaction.redact_text("secret-of-job-fd") == "secret-of-job-fd"  # scope closed
    finally:
        connection.close()
        for fd in filler:
            os.close(fd)
