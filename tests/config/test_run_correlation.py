"""One request's requestId follows the run it queued: onto the web process's log lines, the
worker's log lines and the spans on both sides, which form one trace (request -> publish ->
worker run -> the run's queries and HTTP call)."""

from __future__ import annotations

import json

import pytest
from opentelemetry import trace

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

REQUEST_ID = "req-correlate-0001"


def test_a_requests_id_and_trace_follow_the_run_it_queued_into_the_worker(
    personas, api_for, celery_worker, otlp_collector, endpoint, canary, json_logs, web_spans
):
    client = api_for(personas.member)
    credential = client.post(
        "/api/orgs/acme/credentials/", {"name": "k", "secret": canary}, format="json"
    ).json()
    agent = client.post(
        "/api/orgs/acme/agents/",
        {
            "name": "caller",
            "config": {"url": endpoint.url},
            "bindings": [
                {
                    "slot": "auth",
                    "credential": credential["id"],
                    "placement": "header",
                    "target": "Authorization",
                    "template": "Bearer {secret}",
                }
            ],
        },
        format="json",
    ).json()
    queued = client.post(f"/api/orgs/acme/agents/{agent['id']}/runs/", HTTP_X_REQUEST_ID=REQUEST_ID)
    run = celery_worker.wait_for_run(queued.json()["id"])
    job_id = str(run.id)
    assert run.status == "succeeded", run.error

    # Web side: the request span, and the publish span inside it.
    (request_span,) = [
        s
        for s in web_spans.spans
        if s.kind == trace.SpanKind.SERVER and s.attributes.get("requestId") == REQUEST_ID
    ]
    trace_id = format(request_span.context.trace_id, "032x")
    (publish_span,) = [s for s in web_spans.spans if s.name == "apply_async/agents.run_agent"]
    assert publish_span.parent.span_id == request_span.context.span_id
    assert publish_span.attributes["requestId"] == REQUEST_ID
    web_lines = [json.loads(line) for line in json_logs.lines]
    queued_lines = [r for r in web_lines if r["requestId"] == REQUEST_ID]
    assert {"agent run queued", "audit agent_run.queue success"} <= {
        r["message"] for r in queued_lines
    }
    assert {r["trace_id"] for r in queued_lines} == {trace_id}

    # Worker side: the run span is the publish span's child, in the same trace.
    (run_span,) = otlp_collector.wait_for(
        lambda s: s.name == "run/agents.run_agent" and s.attributes.get("jobId") == job_id
    )
    assert run_span.service == "everesthood-worker"
    assert (run_span.trace_id, run_span.parent_span_id) == (
        trace_id,
        format(publish_span.context.span_id, "016x"),
    )
    assert run_span.attributes["requestId"] == REQUEST_ID
    inside = [s for s in otlp_collector.spans if s.trace_id == trace_id and s is not run_span]
    assert {"GET"} <= {s.name for s in inside}, "the tool's HTTP call was not traced"
    assert any(s.attributes.get("db.system") for s in inside), "no query was traced"
    assert {(s.attributes["requestId"], s.attributes["jobId"]) for s in inside} == {
        (REQUEST_ID, job_id)
    }

    # Worker log lines of the run: the same requestId, jobId and trace; each line's span_id
    # is one of the trace's spans.
    celery_worker.wait_for_log(
        lambda r: r.get("jobId") == job_id and r["logger"] == "celery.app.trace"
    )
    job_lines = [
        r
        for r in celery_worker.log_records()
        if r.get("jobId") == job_id and r["logger"] != "celery.worker.strategy"
    ]
    assert {"agent run started", "agent run succeeded"} <= {r["message"] for r in job_lines}
    assert {(r["requestId"], r["trace_id"]) for r in job_lines} == {(REQUEST_ID, trace_id)}
    span_ids = {run_span.span_id} | {s.span_id for s in inside}
    assert {r["span_id"] for r in job_lines} <= span_ids
    # Celery's own "received" line is logged before the task's context exists; it still
    # carries the jobId.
    assert any(
        r["logger"] == "celery.worker.strategy" and r["message"].endswith("received")
        for r in celery_worker.log_records()
        if r.get("jobId") == job_id
    )
