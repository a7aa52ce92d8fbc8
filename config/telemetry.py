"""OpenTelemetry tracing, set up once per process: `configure(role="web")` from config.wsgi /
config.asgi (before Django loads its middleware), `configure(role="worker")` at Celery's
worker_init. Celery is instrumented when config.celery is imported (see there for why).

What is traced: Django requests, Celery publish and run (linked through the trace context
in the message headers), database queries (Django's sqlite3 and psycopg connections, and
the embedded broker's SQLAlchemy ones) and outgoing `requests` calls (the agents' tool).

Nothing leaves the process without passing `RedactingSpanProcessor`: every exporter sits
behind it, and it hands exporters a redacted copy of each span (name, attributes, events -
exception messages and stack traces included -, links, status), produced in the thread that
ends the span, while the job's or request's registered secrets are still in scope. Every span
also gets the requestId and jobId of the context it starts in.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from types import MappingProxyType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import Link, Status
from opentelemetry.util.types import Attributes, AttributeValue

from config import context, redaction

EXPORTERS = ("otlp", "console", "none")
OTLP_PROTOCOLS = ("http/protobuf",)
REQUEST_ID_ATTRIBUTE = "requestId"
JOB_ID_ATTRIBUTE = "jobId"
# Attributes that hold a bare query string (no leading "?"), redacted by parameter name too.
_QUERY_ATTRIBUTES = frozenset({"url.query"})
_REQUEST_CONTEXT_MIDDLEWARE = "config.middleware.RequestContextMiddleware"


class RedactingSpanProcessor(SpanProcessor):
    """Stamps requestId/jobId on each span as it starts; hands a redacted copy of each ended
    span to the processors behind it (the exporters). Exporters never see the original."""

    def __init__(self) -> None:
        self._processors: tuple[SpanProcessor, ...] = ()
        self._lock = threading.Lock()

    def add(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = (*self._processors, processor)

    def remove(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = tuple(p for p in self._processors if p is not processor)

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        ctx = context.current()
        if ctx.request_id:
            span.set_attribute(REQUEST_ID_ATTRIBUTE, ctx.request_id)
        if ctx.job_id:
            span.set_attribute(JOB_ID_ATTRIBUTE, ctx.job_id)

    def on_end(self, span: ReadableSpan) -> None:
        processors = self._processors
        if not processors:
            return  # no exporter: nothing leaves, nothing to copy
        clean = redacted_span(span)
        for processor in processors:
            processor.on_end(clean)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


def _redact_value(key: str, value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        if redaction.is_sensitive_key(key):
            return redaction.REDACTED
        if key in _QUERY_ATTRIBUTES:
            return redaction.redact_query(value)
        return redaction.redact_text(value)
    if isinstance(value, Sequence) and value and isinstance(value[0], str):
        # Captured headers are one-item sequences: http.request.header.authorization = ("...",).
        if redaction.is_sensitive_key(key):
            return tuple(redaction.REDACTED for _ in value)
        return tuple(redaction.redact_text(str(v)) for v in value)
    return value


def redact_attributes(attributes: Attributes) -> MappingProxyType[str, AttributeValue]:
    # The SDK cleaned and bounded these values when they were set; a read-only view of the
    # redacted copy is all an exporter needs.
    return MappingProxyType(
        {key: _redact_value(key, value) for key, value in (attributes or {}).items()}
    )


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of an ended span with every string it carries redacted.

    ReadableSpan's constructor is the SDK's own way to build an immutable span; an ended Span
    cannot be changed in place (its attributes are frozen when it ends).
    """
    status = span.status
    if status.description:
        status = Status(status.status_code, redaction.redact_text(status.description))
    return ReadableSpan(
        name=redaction.redact_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_attributes(span.attributes),
        events=[
            Event(redaction.redact_text(e.name), redact_attributes(e.attributes), e.timestamp)
            for e in span.events
        ],
        links=[Link(link.context, redact_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


# --- configuration ------------------------------------------------------------------------


class TelemetryConfigurationError(ValueError):
    """A bad OTEL_* setting; the message names the variable and the allowed values."""


def check_settings(exporters: Sequence[str], protocol: str) -> list[str]:
    """Problems with the tracing settings, each naming its variable (used by config.startup)."""
    problems = []
    unknown = [name for name in exporters if name.strip().lower() not in EXPORTERS]
    if unknown:
        problems.append(
            f"OTEL_TRACES_EXPORTER: unknown exporter(s) {', '.join(map(repr, unknown))}; "
            f"use {', '.join(EXPORTERS)}"
        )
    wants_otlp = any(name.strip().lower() == "otlp" for name in exporters)
    if wants_otlp and protocol not in OTLP_PROTOCOLS:
        problems.append(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not available; this build exports "
            f"OTLP over {', '.join(OTLP_PROTOCOLS)} only"
        )
    return problems


def build_exporters(names: Sequence[str], protocol: str) -> list[SpanExporter]:
    problems = check_settings(names, protocol)
    if problems:
        raise TelemetryConfigurationError("; ".join(problems))
    exporters: list[SpanExporter] = []
    for name in {n.strip().lower() for n in names} - {"none"}:
        if name == "otlp":
            # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            # One JSON object per line on stdout (logs go to stderr).
            exporters.append(ConsoleSpanExporter(formatter=lambda s: s.to_json(indent=None) + "\n"))
    return exporters


class _Telemetry:
    def __init__(self, provider: TracerProvider, processor: RedactingSpanProcessor) -> None:
        self.provider = provider
        self.processor = processor


_state: _Telemetry | None = None
_state_lock = threading.Lock()


def configure(*, role: str, exporters: Sequence[SpanExporter] | None = None) -> None:
    """Set up tracing for this process (once; later calls do nothing).

    `exporters` replaces the ones OTEL_TRACES_EXPORTER names (benchmarks pass their own).
    """
    global _state
    from django.conf import settings

    with _state_lock:
        if _state is not None:
            return
        if exporters is None:
            exporters = build_exporters(
                settings.OTEL_TRACES_EXPORTER, settings.OTEL_EXPORTER_OTLP_PROTOCOL
            )
        resource = Resource.create(
            {
                "service.name": settings.OTEL_SERVICE_NAME or f"everesthood-{role}",
                "service.namespace": "everesthood",
                "everesthood.process.role": role,
            }
        )
        processor = RedactingSpanProcessor()
        for exporter in exporters:
            processor.add(BatchSpanProcessor(exporter))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _instrument_libraries(provider, processor, resource)
        _state = _Telemetry(provider, processor)


def _instrument_libraries(
    provider: TracerProvider, processor: RedactingSpanProcessor, resource: Resource
) -> None:
    from django.conf import settings
    from opentelemetry.instrumentation.dbapi import trace_integration
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    middleware = list(settings.MIDDLEWARE)
    position = (
        middleware.index(_REQUEST_CONTEXT_MIDDLEWARE) + 1
        if _REQUEST_CONTEXT_MIDDLEWARE in middleware
        else 0
    )
    DjangoInstrumentor().instrument(tracer_provider=provider, middleware_position=position)
    RequestsInstrumentor().instrument(tracer_provider=provider)

    # Queries are traced only inside a trace (a request, a task): a query with no parent -
    # the embedded broker polls its SQLite tables every 20 ms - never starts a trace of its
    # own. Same processor, so the same redaction and exporters.
    db_provider = TracerProvider(
        resource=resource, sampler=ParentBased(ALWAYS_OFF), shutdown_on_exit=False
    )
    db_provider.add_span_processor(processor)
    # opentelemetry-instrumentation-sqlite3/-psycopg are not published for this release of
    # the instrumentation packages (0.66b2); both are thin wrappers of this dbapi call.
    # Django and SQLAlchemy import sqlite3.dbapi2, not sqlite3: wrap the module they call.
    # (trace_integration's first parameter is annotated Callable; it takes the module.)
    trace_integration(
        sqlite3.dbapi2,  # type: ignore[arg-type]
        "connect",
        "sqlite",
        tracer_provider=db_provider,
    )
    import psycopg

    trace_integration(
        psycopg,  # type: ignore[arg-type]
        "connect",
        "postgresql",
        connection_attributes={
            "database": "info.dbname",
            "port": "info.port",
            "host": "info.host",
            "user": "info.user",
        },
        tracer_provider=db_provider,
    )


def instrument_celery() -> None:
    """Celery publish/run spans and trace context in message headers. Safe before configure():
    the instrumentation's tracer resolves the provider when it first starts a span."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def add_span_processor(processor: SpanProcessor) -> None:
    """Put one more processor behind the redaction (tests: an in-memory exporter)."""
    if _state is None:
        raise RuntimeError("telemetry is not configured in this process")
    _state.processor.add(processor)


def remove_span_processor(processor: SpanProcessor) -> None:
    if _state is not None:
        _state.processor.remove(processor)


def export_synchronously(exporter: SpanExporter) -> SpanProcessor:
    """Export every span to `exporter` as it ends (no batching); returns the processor."""
    processor = SimpleSpanProcessor(exporter)
    add_span_processor(processor)
    return processor


def flush(timeout_millis: int = 5000) -> bool:
    """Export what is buffered (a worker child flushes before it exits)."""
    return _state.provider.force_flush(timeout_millis) if _state is not None else True
