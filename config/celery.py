"""The Celery app, and the signals that give workers their role and context.

- worker start: verify configuration (same checks as the web), allow decryption (workers are
  the only processes that may decrypt), configure JSON logging;
- publish: the requestId of the queuing request travels in the message headers (the trace
  context too, put there by the OpenTelemetry instrumentation);
- task start/end: bind jobId and requestId for every log line, audit event and span, and hold
  the job's secret scope (config.redaction) open from before the task span starts until after
  it ends.
"""

from __future__ import annotations

import logging
import os
import select
from contextlib import ExitStack
from typing import Any

from celery import Celery, signals

from config import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("everesthood")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

REQUEST_ID_HEADER = "everesthood_request_id"


def tune_embedded_broker() -> None:
    # kombu's SQLAlchemy transport polls once a second and its polling_interval cannot go in
    # broker_transport_options (those are passed to create_engine): set it on the class.
    from django.conf import settings
    from kombu.transport import sqlalchemy as sqla_transport

    sqla_transport.Transport.polling_interval = settings.CELERY_BROKER_POLLING_INTERVAL


@signals.worker_init.connect
def _on_worker_init(**kwargs: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from config.logging import configure_logging
    from config.startup import verify_startup
    from credentials.crypto import KeyConfigurationError, enable_decryption, get_keyring

    configure_logging()
    tune_embedded_broker()
    try:
        verify_startup()
        get_keyring()
    except (ImproperlyConfigured, KeyConfigurationError) as exc:
        # Celery logs and swallows exceptions from signal handlers; a worker with bad key
        # configuration must not start consuming, so exit here with the reason.
        logging.getLogger("everesthood.startup").critical("%s", exc)
        raise SystemExit(1) from None
    # Before the pool forks: the SDK's span processors restart their export thread in each
    # child (os.register_at_fork), and solo/thread pools, which never fork, are covered too.
    telemetry.configure(role="worker")
    _check_connections_without_a_round_trip()
    enable_decryption()


@signals.worker_process_init.connect
def _on_worker_process_init(**kwargs: Any) -> None:
    from credentials.crypto import enable_decryption

    enable_decryption()


@signals.worker_process_shutdown.connect
def _on_worker_process_shutdown(**kwargs: Any) -> None:
    # A pool child may exit without running atexit handlers: export its last spans now.
    telemetry.flush()


@signals.setup_logging.connect
def _on_setup_logging(**kwargs: Any) -> None:
    # Connecting this signal stops Celery from installing its own (plain-text) handlers.
    from config.logging import configure_logging

    configure_logging()


@signals.before_task_publish.connect
def _on_before_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    from config import context

    request_id = context.current().request_id
    if headers is not None and request_id and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id


# Per running task: what task_postrun must undo (the context binding, the secret scope).
_task_scopes: dict[str, ExitStack] = {}


# Signal receivers run in the order they were connected, and the order matters here:
#   task_prerun:  ours (bind jobId/requestId, open the secret scope), then OpenTelemetry's
#                 (start the task span, which takes jobId/requestId as attributes);
#   task_postrun: OpenTelemetry's (end the span: it is redacted while the job's secrets are
#                 still registered), then ours (close the scope, unbind).
# So ours for prerun is connected first, the instrumentation next, ours for postrun last.
@signals.task_prerun.connect
def _on_task_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    from config import context, redaction

    request = getattr(task, "request", None)
    request_id = getattr(request, REQUEST_ID_HEADER, None) or (
        (getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    )
    scope = ExitStack()
    token = context.activate(request_id=request_id, job_id=task_id)
    scope.callback(context.deactivate, token)
    scope.enter_context(redaction.secret_scope())
    # Registered before anything else can fail, so postrun always closes it.
    if task_id:
        _task_scopes[task_id] = scope
    _drop_unusable_connections()


telemetry.instrument_celery()


@signals.task_postrun.connect
def _on_task_postrun(task_id: str | None = None, **kwargs: Any) -> None:
    scope = _task_scopes.pop(task_id or "", None)
    try:
        _drop_unusable_connections()
    finally:
        if scope is not None:
            scope.close()


def _drop_unusable_connections() -> None:
    """What Django does around every request: close a connection that errored or is older
    than CONN_MAX_AGE, so a worker that reuses connections (CELERY_DB_REUSE_MAX) survives a
    database restart or failover. Plus the worker's own health check (see
    `_check_connections_without_a_round_trip`): a kept connection the server has hung up on
    since its last use is closed here, and the task opens a new one."""
    from django.db import close_old_connections, connections

    close_old_connections()
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if connection.vendor != "postgresql" or raw is None:
            continue
        if _hung_up(raw):
            connection.close()


def _hung_up(raw: Any) -> bool:
    """Whether the server ended this idle connection: an idle connection has nothing to read;
    one the server closed or terminated (a restart, pg_terminate_backend) reads as its FATAL
    message or EOF. A connection whose peer vanished without a word (a failover that moved
    the address) reads as nothing: the run's claim retries that on a new connection
    (agents.services.agent_run_execute). Any doubt counts as hung up: it costs a reconnect."""
    try:
        poller = select.poll()  # not select(): it refuses descriptors from 1024 on
        poller.register(raw.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


def _check_connections_without_a_round_trip() -> None:
    """Workers replace Django's health check (CONN_HEALTH_CHECKS: a `SELECT 1` before the
    first statement of every task, one more round trip for every run) by a look at the
    connection's socket before each task (`_drop_unusable_connections`), which costs no round
    trip and catches what a restart or failover does to a kept connection."""
    from django.db import connections

    for alias in connections:
        connections[alias].settings_dict["CONN_HEALTH_CHECKS"] = False
    # Read when a connection opens: one the startup checks opened is closed, the next opens
    # with the setting.
    connections.close_all()
