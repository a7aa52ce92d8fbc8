"""The Celery app, and the signals that give workers their role and context.

- worker start: verify configuration (same checks as the web), allow decryption (workers are
  the only processes that may decrypt), configure JSON logging;
- publish: the requestId of the queuing request travels in the message headers;
- task start/end: bind jobId and requestId for every log line, audit event and span.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals

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
    enable_decryption()


@signals.worker_process_init.connect
def _on_worker_process_init(**kwargs: Any) -> None:
    from credentials.crypto import enable_decryption

    enable_decryption()


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


_task_tokens: dict[str, Any] = {}


@signals.task_prerun.connect
def _on_task_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    from config import context

    request = getattr(task, "request", None)
    request_id = getattr(request, REQUEST_ID_HEADER, None) or (
        (getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    )
    token = context.activate(request_id=request_id, job_id=task_id)
    _drop_unusable_connections()
    if task_id:
        _task_tokens[task_id] = token


@signals.task_postrun.connect
def _on_task_postrun(task_id: str | None = None, **kwargs: Any) -> None:
    from config import context

    _drop_unusable_connections()
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        context.deactivate(token)


def _drop_unusable_connections() -> None:
    # What Django does around every request: close a connection that is broken or older than
    # CONN_MAX_AGE, so a worker that reuses connections (CELERY_DB_REUSE_MAX) survives a
    # database restart or failover after one failed task at most.
    from django.db import close_old_connections

    close_old_connections()
