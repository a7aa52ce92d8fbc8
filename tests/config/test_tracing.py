"""Tracing: what the exporters receive (always a redacted copy), which attributes every span
carries, how sensitive headers and query parameters look, and how exporters are chosen."""

from __future__ import annotations

import json

import pytest
from django.core.checks import run_checks
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from config import context, redaction, telemetry
from config.startup import STARTUP_TAG

tracer = trace.get_tracer("tests.tracing")


def _server_span(capture, route_fragment):
    (span,) = [
        s
        for s in capture.spans
        if s.kind == trace.SpanKind.SERVER and route_fragment in s.attributes.get("http.url", "")
    ]
    return span


@pytest.mark.django_db
def test_a_request_span_carries_its_request_id_and_log_lines_inside_carry_its_ids(
    personas, api_for, web_spans, json_logs, canary, django_capture_on_commit_callbacks
):
    # The audit line is logged when the event commits, with the context (and span) it had.
    with django_capture_on_commit_callbacks(execute=True):
        api_for(personas.member).post(
            "/api/orgs/acme/credentials/",
            {"name": "n", "secret": canary},
            format="json",
            HTTP_X_REQUEST_ID="req-span-00001",
        )
    span = _server_span(web_spans, "/credentials/")
    assert span.name == "POST api/orgs/<slug:org>/credentials/"
    assert span.attributes["requestId"] == "req-span-00001"
    children = [s for s in web_spans.spans if s.parent and s.parent.span_id == span.context.span_id]
    assert children, "the request made no traced database query"
    assert {s.attributes["requestId"] for s in children} == {"req-span-00001"}
    assert {s.attributes["db.system"] for s in children} <= {"sqlite", "postgresql"}
    (audit_line,) = [json.loads(line) for line in json_logs.lines if "credential.create" in line]
    assert audit_line["trace_id"] == format(span.context.trace_id, "032x")
    assert audit_line["span_id"] == format(span.context.span_id, "016x")
    assert canary not in web_spans.text()


@pytest.mark.django_db
def test_credential_headers_and_query_parameters_are_sanitised_in_request_spans(
    personas, client, web_spans, monkeypatch, canary
):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    client.force_login(personas.member)
    client.get(
        f"/api/orgs/?page=2&api_key={canary}&access_token={canary}",
        HTTP_AUTHORIZATION=f"Bearer {canary}",
        HTTP_X_API_KEY=canary,
        HTTP_X_TRACE_NOTE="kept",
    )
    span = _server_span(web_spans, "/api/orgs/")
    attributes = span.attributes
    assert attributes["http.url"] == (
        "http://testserver/api/orgs/?page=2&api_key=[REDACTED]&access_token=[REDACTED]"
    )
    assert list(attributes["http.request.header.authorization"]) == ["[REDACTED]"]
    assert list(attributes["http.request.header.x_api_key"]) == ["[REDACTED]"]
    assert list(attributes["http.request.header.cookie"]) == ["[REDACTED]"]
    assert list(attributes["http.request.header.x_trace_note"]) == ["kept"]
    assert canary not in web_spans.text()


def test_exception_events_and_status_are_scrubbed_of_registered_secrets(web_spans, canary):
    with redaction.secret_scope():
        redaction.register_secret(canary)
        with tracer.start_as_current_span("tool call") as span:
            span.set_attribute("note", f"sent {canary}")
            span.set_attribute("url.query", f"key={canary}&token=abc123&page=1")
            try:
                raise ValueError(f"upstream rejected {canary}")
            except ValueError as exc:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"failed: {canary}"))
    (exported,) = web_spans.spans
    assert exported.attributes["note"] == "sent [REDACTED]"
    assert exported.attributes["url.query"] == "key=[REDACTED]&token=[REDACTED]&page=1"
    (event,) = exported.events
    assert event.attributes["exception.message"] == "upstream rejected [REDACTED]"
    assert "ValueError: upstream rejected [REDACTED]" in event.attributes["exception.stacktrace"]
    assert exported.status.description == "failed: [REDACTED]"
    assert canary not in web_spans.text()


def test_spans_started_in_a_job_carry_its_job_id_and_request_id(web_spans):
    with (
        context.bound(request_id="req-job-span-1", job_id="job-span-1"),
        tracer.start_as_current_span("work"),
    ):
        pass
    (span,) = web_spans.spans
    assert (span.attributes["requestId"], span.attributes["jobId"]) == (
        "req-job-span-1",
        "job-span-1",
    )


@pytest.mark.django_db
def test_database_queries_outside_any_trace_start_no_trace_of_their_own(personas, web_spans):
    from orgs.models import Organization

    assert Organization.objects.filter(slug="acme").exists()
    assert web_spans.spans == []
    with tracer.start_as_current_span("parent") as parent:
        assert Organization.objects.filter(slug="acme").exists()
    (query,) = [s for s in web_spans.spans if s.name != "parent"]
    assert query.parent.span_id == parent.get_span_context().span_id
    assert "orgs_organization" in query.attributes["db.statement"]


def test_exporters_are_chosen_by_otel_traces_exporter():
    assert telemetry.build_exporters(["none"], "http/protobuf") == []
    (otlp,) = telemetry.build_exporters(["otlp"], "http/protobuf")
    assert isinstance(otlp, OTLPSpanExporter)
    kinds = {type(e) for e in telemetry.build_exporters(["otlp", "console"], "http/protobuf")}
    assert kinds == {OTLPSpanExporter, ConsoleSpanExporter}


def test_an_unknown_exporter_or_protocol_stops_startup_naming_the_variable(settings):
    settings.OTEL_TRACES_EXPORTER = ["jaeger"]
    settings.OTEL_EXPORTER_OTLP_PROTOCOL = "grpc"
    messages = [m.msg for m in run_checks(tags=[STARTUP_TAG]) if m.id == "config.E002"]
    assert messages == [
        "OTEL_TRACES_EXPORTER: unknown exporter(s) 'jaeger'; use otlp, console, none"
    ]
    settings.OTEL_TRACES_EXPORTER = ["otlp"]
    messages = [m.msg for m in run_checks(tags=[STARTUP_TAG]) if m.id == "config.E002"]
    assert messages == [
        "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not available; this build exports OTLP over "
        "http/protobuf only"
    ]
    with pytest.raises(telemetry.TelemetryConfigurationError, match="OTEL_TRACES_EXPORTER"):
        telemetry.build_exporters(["zipkin"], "http/protobuf")
