"""JSON logging for every process, with context fields and redaction on every handler."""

from __future__ import annotations

import logging
import logging.config
import sys
import traceback
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from config import context, redaction

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
CONTEXT_FIELDS = ("requestId", "jobId", "trace_id", "span_id", "org", "user")


class ContextFilter(logging.Filter):
    """Stamp each record with requestId, jobId, org, user and the current trace/span ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        record.requestId = ctx.request_id
        job_id = ctx.job_id
        if job_id is None and record.name.startswith("celery."):
            # Celery's own "Task ... received" line is logged before the task's context
            # exists; its `data` carries the task id, which is our jobId.
            data = getattr(record, "data", None)
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                job_id = data["id"]
        record.jobId = job_id
        record.org = ctx.org
        record.user = ctx.user
        record.trace_id, record.span_id = _trace_ids()
        return True


def _trace_ids() -> tuple[str | None, str | None]:
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None, None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


class RedactionFilter(logging.Filter):
    """Scrub the message, its arguments, `extra` at any depth and exception text.

    The record is rewritten in place (message rendered, args dropped, traceback rendered to
    text) so no later formatter or handler can render the original values.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # malformed format args must not lose the line
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg = redaction.redact_text(message)
        record.args = None
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = redaction.redact_text(text.rstrip("\n"))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redaction.redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redaction.redact_text(record.stack_info)
        for key, value in list(vars(record).items()):
            if key in _STANDARD_ATTRS or key in CONTEXT_FIELDS:
                continue
            if redaction.is_sensitive_key(key):
                setattr(record, key, redaction.REDACTED)
            else:
                setattr(record, key, redaction.redact(value))
        return True


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: timestamp (UTC ISO 8601), level, logger, message, context."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message", *CONTEXT_FIELDS],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            reserved_attrs=[*_STANDARD_ATTRS],
            timestamp=True,
            json_ensure_ascii=False,
        )


def configure_logging(_django_logging: dict[str, Any] | None = None) -> None:
    """Django's LOGGING_CONFIG hook; also called by the Celery worker at start."""
    from django.conf import settings

    level = settings.LOG_LEVEL.upper()
    handlers: dict[str, dict[str, Any]] = {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "json",
            "filters": ["context", "redaction"],
        }
    }
    if settings.LOG_FILE:
        Path(settings.LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
        handlers["file"] = {
            "class": "logging.FileHandler",
            "filename": settings.LOG_FILE,
            "encoding": "utf-8",
            "formatter": "json",
            "filters": ["context", "redaction"],
        }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {
                "context": {"()": ContextFilter},
                "redaction": {"()": RedactionFilter},
            },
            "formatters": {"json": {"()": JsonLineFormatter}},
            "handlers": handlers,
            "root": {"level": level, "handlers": list(handlers)},
            "loggers": {
                # Celery's loggers propagate to root so they pass the same filters.
                "celery": {"level": level, "propagate": True},
                "django.db.backends": {"level": "INFO"},
                "django.server": {"level": level, "propagate": True},
            },
        }
    )
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(exc_type: Any, exc: BaseException, tb: Any) -> None:
    logging.getLogger("everesthood").critical("uncaught exception", exc_info=(exc_type, exc, tb))
