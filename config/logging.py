"""JSON logging for every process, with context fields and redaction on every handler."""

from __future__ import annotations

import logging
import logging.config
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from config import context, redaction

# Set on a record once each filter has done its work, so the next handler (stderr, then
# LOG_FILE) neither redoes it nor, for the context, redoes it from a record the redaction
# already rewrote. Never rendered: they are reserved attributes.
_CONTEXT_MARK = "_everesthood_context"
_REDACTED_MARK = "_everesthood_redacted"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", _CONTEXT_MARK, _REDACTED_MARK}
)
CONTEXT_FIELDS = ("requestId", "jobId", "trace_id", "span_id", "org", "user")
_NOT_EXTRA = _STANDARD_ATTRS | set(CONTEXT_FIELDS)


class ContextFilter(logging.Filter):
    """Stamp each record with requestId, jobId, org, user and the current trace/span ids."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        # The span context of the previous record and its ids as text: consecutive lines of
        # one span (most lines) skip the formatting.
        self._last_span: tuple[object, str, str] = (None, "", "")

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _CONTEXT_MARK, False):
            return True
        ctx = context.current()
        request_id = ctx.request_id
        if request_id is None:
            # django.request's "Unauthorized: /path" line is logged after the middleware has
            # returned (and unbound the context); the request it passes carries the id.
            request_id = getattr(getattr(record, "request", None), "request_id", None)
        record.requestId = request_id
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
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            record.trace_id = record.span_id = None
        else:
            last = self._last_span
            if last[0] is not span_context:
                last = (
                    span_context,
                    format(span_context.trace_id, "032x"),
                    format(span_context.span_id, "016x"),
                )
                self._last_span = last
            record.trace_id, record.span_id = last[1], last[2]
        setattr(record, _CONTEXT_MARK, True)
        return True


class RedactionFilter(logging.Filter):
    """Scrub the message, its arguments, `extra` at any depth and exception text.

    The record is rewritten in place (message rendered, args dropped, traceback rendered to
    text) so no later formatter or handler can render the original values.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _REDACTED_MARK, False):
            return True
        if not record.args and type(record.msg) is str:
            message = record.msg
        else:
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
        attributes = record.__dict__
        # Values are replaced in place while iterating: the keys do not change.
        for key, value in attributes.items():
            if key in _NOT_EXTRA:
                continue
            if redaction.is_sensitive_name(key):
                attributes[key] = redaction.REDACTED
            elif type(value) is str:
                attributes[key] = redaction.redact_text(value)
            else:
                attributes[key] = redaction.redact(value)
        setattr(record, _REDACTED_MARK, True)
        return True


# python-json-logger's options for our lines; JsonLineFormatter renders exactly what a stock
# JsonFormatter given these renders (tests/config/test_log_redaction.py compares them).
JSON_FORMATTER_OPTIONS: dict[str, Any] = {
    "fmt": ["levelname", "name", "message", *CONTEXT_FIELDS],
    "rename_fields": {"levelname": "level", "name": "logger", "exc_info": "exception"},
    "reserved_attrs": [*_STANDARD_ATTRS],
    "timestamp": True,
    "json_ensure_ascii": False,
}


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: timestamp (UTC ISO 8601), level, logger, message, context.

    `add_fields` is python-json-logger's, narrowed to the options above (no defaults, no
    static fields): it runs for every line of every process, and the stock one spends most of
    its time on options we do not use.
    """

    def __init__(self) -> None:
        super().__init__(**JSON_FORMATTER_OPTIONS)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        rename = self.rename_fields
        attributes = record.__dict__
        for field in self._required_fields:
            log_data[rename.get(field, field)] = attributes.get(field)
        for key, value in message_dict.items():
            log_data[rename.get(key, key)] = value
        skip = self._skip_fields
        for key, value in attributes.items():
            if key in skip or (isinstance(key, str) and key.startswith("_")):
                continue
            log_data[rename.get(key, key)] = value
        # The stock formatter stores a datetime and lets the JSON default render it with
        # isoformat(); rendering it here skips that callback.
        log_data["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat()


class JsonLineHandler(logging.StreamHandler):
    """A stream handler that formats JSON lines and carries the context and redaction filters
    itself, so it cannot be configured without them."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self.setFormatter(JsonLineFormatter())
        self.addFilter(ContextFilter())
        self.addFilter(RedactionFilter())


class JsonLineFileHandler(logging.FileHandler):
    def __init__(self, filename: str) -> None:
        super().__init__(filename, encoding="utf-8")
        self.setFormatter(JsonLineFormatter())
        self.addFilter(ContextFilter())
        self.addFilter(RedactionFilter())


def is_redacting(handler: logging.Handler) -> bool:
    """Whether a handler passes records through both filters before it formats them."""
    kinds = {type(f) for f in handler.filters}
    return {ContextFilter, RedactionFilter} <= kinds and isinstance(
        handler.formatter, JsonLineFormatter
    )


def configure_logging(options: Mapping[str, Any] | None = None) -> None:
    """Django's LOGGING_CONFIG hook (called with settings.LOGGING before the apps load, in
    every process that sets Django up); called again by the Celery worker at start."""
    if options is None:
        from django.conf import settings

        options = settings.LOGGING
    level = str(options.get("level") or "INFO").upper()
    log_file = options.get("file")
    handlers: dict[str, dict[str, Any]] = {
        "stderr": {"()": JsonLineHandler, "stream": "ext://sys.stderr"},
    }
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers["file"] = {"()": JsonLineFileHandler, "filename": str(log_file)}
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": handlers,
            "root": {"level": level, "handlers": list(handlers)},
            "loggers": {
                # Django's DEFAULT_LOGGING gives these plain-text handlers of their own; here
                # they lose them and propagate to root, through the same filters.
                "django": {"level": level, "handlers": [], "propagate": True},
                "django.server": {"level": level, "handlers": [], "propagate": True},
                "django.db.backends": {"level": "INFO", "handlers": [], "propagate": True},
                "celery": {"level": level, "handlers": [], "propagate": True},
            },
        }
    )
    _route_every_logger_to_root()
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _route_every_logger_to_root() -> None:
    """Every record reaches a redacting handler: loggers configured before us (Django's
    defaults, a library's own handler) lose any handler that is not ours and propagate to
    root; and the handler of last resort, used when no handler is found, is ours too."""
    root = logging.getLogger()
    for logger in [root, *logging.Logger.manager.loggerDict.values()]:
        if not isinstance(logger, logging.Logger):
            continue  # a PlaceHolder: no handlers of its own
        foreign = [h for h in logger.handlers if not is_redacting(h)]
        for handler in foreign:
            logger.removeHandler(handler)
        if logger is not root and not logger.propagate and not logger.handlers:
            logger.propagate = True
    logging.lastResort = JsonLineHandler(sys.stderr)
    logging.lastResort.setLevel(logging.WARNING)


def _log_uncaught(exc_type: Any, exc: BaseException, tb: Any) -> None:
    logging.getLogger("everesthood").critical("uncaught exception", exc_info=(exc_type, exc, tb))
