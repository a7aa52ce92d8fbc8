"""The leak canary: one distinctive secret is created through the API, used by a real worker
through a tool that echoes it back (in a header, a URL query and a Basic authorization
header), and forced by a probe running in that worker into a log message, its arguments, a
log `extra` at depth, a caught-and-logged exception and an exception that escapes the task.
Then every surface is scanned for the secret in each encoding a tool would send it in:

- every log line of the web process (this test process) and of the worker (its log file and
  its whole stdout/stderr), Celery's own "received"/"succeeded"/"raised" lines included;
- every span: this process's (in-memory exporter) and the worker's (received over OTLP, with
  capture of every request and response header of the tool switched on);
- the metrics page, every HTTP response (bodies and headers), the stored run output, the audit
  rows and the published task messages.
"""

from __future__ import annotations

import json
import socket

import pytest
from celery import signals
from django.contrib.auth.models import User
from django.test import Client

from agents.models import AgentRun, RunStatus
from audit.models import AuditEvent
from tests.worker_probes import BASIC_USER, force_secret_everywhere, secret_forms

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

RUN_REQUEST_ID = "req-canary-run-0001"


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone"


class Responses:
    """Every response the test client gives, as text (status line, headers, body)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def record(self, response):
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        self.seen.append(f"{response.status_code}\n{headers}\n{response.content.decode()}")
        return response

    def text(self) -> str:
        return "\n".join(self.seen)


@pytest.fixture
def published():
    seen: list[str] = []

    def record(body=None, headers=None, **kwargs):
        seen.append(json.dumps({"body": body, "headers": headers}, default=str))

    signals.before_task_publish.connect(record, weak=False)
    yield seen
    signals.before_task_publish.disconnect(record)


def test_no_surface_carries_the_secret_in_any_encoding(
    personas,
    api_for,
    celery_worker,
    otlp_collector,
    endpoint,
    canary,
    json_logs,
    web_spans,
    published,
    monkeypatch,
    settings,
):
    # Header capture on in this process too: the sanitising must hold when an operator
    # switches it on.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", ".*")
    settings.METRICS_TOKEN = "m" * 40
    responses = Responses()
    client = api_for(personas.member)

    credential = responses.record(
        client.post(
            "/api/orgs/acme/credentials/", {"name": "echo-key", "secret": canary}, format="json"
        )
    ).json()
    bindings = [
        {"slot": "hdr", "placement": "header", "target": "X-Echo-Key"},
        {"slot": "qry", "placement": "query", "target": "key"},
        {"slot": "basic", "placement": "basic_auth", "target": BASIC_USER},
    ]
    agent = responses.record(
        client.post(
            "/api/orgs/acme/agents/",
            {
                "name": "echo",
                "config": {"url": endpoint.url},
                "bindings": [
                    {**b, "credential": credential["id"], "template": "{secret}"} for b in bindings
                ],
            },
            format="json",
        )
    ).json()
    queued = responses.record(
        client.post(f"/api/orgs/acme/agents/{agent['id']}/runs/", HTTP_X_REQUEST_ID=RUN_REQUEST_ID)
    )
    assert queued.status_code == 202
    run = celery_worker.wait_for_run(queued.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.error

    # The tool really sent it in all three places, and the endpoint echoed all three.
    forms = secret_forms(canary)
    (received,) = endpoint.received
    assert received.headers["X-Echo-Key"] == canary
    assert received.headers["Authorization"] == f"Basic {forms['basic']}"
    assert received.path.endswith(f"?key={forms['url_plus']}")
    echoed = json.loads(run.output["body"])
    assert echoed == {
        "accepted": True,
        "you_sent": "Basic [REDACTED]",
        "query": "key=[REDACTED]",
        "headers": {"X-Echo-Key": "[REDACTED]"},
    }

    # The probe, in the same worker: the secret in every log and exception shape.
    probe = force_secret_everywhere.apply_async(
        args=[
            str(personas.org.id),
            agent["id"],
            credential["id"],
            endpoint.url,
            _closed_port_url(),
        ]
    )
    raised = celery_worker.wait_for_log(
        lambda r: r.get("jobId") == probe.id and "raised unexpected" in r["message"]
    )
    assert raised["message"].startswith("Task tests.probe.force_secret_everywhere[")
    assert "ProbeFailureError('probe escapes with [REDACTED] via " in raised["message"]
    assert "key=[REDACTED]" in raised["message"]
    assert "ProbeFailureError: probe escapes with [REDACTED]" in raised["exception"]
    probe_lines = [r for r in celery_worker.log_records() if r.get("jobId") == probe.id]
    forced = next(r for r in probe_lines if r["message"].startswith("probe: secret in the"))
    assert forced["message"].startswith("probe: secret in the message [REDACTED] and")
    assert forced["probe"]["depth"][0]["forms"] == ["[REDACTED]"] * len(forms)
    assert forced["basic_header"] == "Basic [REDACTED]"
    assert "HTTP request failed: ConnectionError" in forced["tool_error"]
    caught = next(r for r in probe_lines if r["message"].startswith("probe: caught"))
    assert (
        "ValueError: probe failure carrying [REDACTED] and Basic [REDACTED]" in caught["exception"]
    )

    # Spans of the worker: the probe's task span with its exception event, and the tool's
    # HTTP spans with every header captured.
    task_span = otlp_collector.wait_for(
        lambda s: s.attributes.get("jobId") == probe.id and s.name.startswith("run/")
    )[0]
    (exception_event,) = [e for e in task_span.events if e["name"] == "exception"]
    assert "probe escapes with [REDACTED]" in exception_event["attributes"]["exception.message"]
    assert "ProbeFailureError" in exception_event["attributes"]["exception.stacktrace"]
    assert task_span.status_message.startswith("probe escapes with [REDACTED]")
    probe_http = [
        s for s in otlp_collector.spans if s.attributes.get("jobId") == probe.id and s.name == "GET"
    ]
    assert any(e["name"] == "exception" for s in probe_http for e in s.events)
    captured = [
        s.attributes for s in probe_http if "http.request.header.authorization" in s.attributes
    ]
    assert captured
    for attributes in captured:
        assert attributes["http.request.header.authorization"] == ["[REDACTED]"]
        assert attributes["http.request.header.x_probe_key"] == ["[REDACTED]"]
        assert "key=[REDACTED]" in attributes["http.url"]
    run_spans = otlp_collector.wait_for(
        lambda s: s.attributes.get("jobId") == str(run.id) and s.name == "GET"
    )
    assert run_spans[0].attributes["http.request.header.x_echo_key"] == ["[REDACTED]"]

    # The web side: metrics page (staff and token), the run as the API shows it, a request
    # that carries the secret in credential-named headers and query parameters.
    staff_client = Client()
    staff_client.force_login(User.objects.create_user(username="ops", is_staff=True))
    metrics = responses.record(staff_client.get("/api/metrics"))
    assert metrics.status_code == 200
    responses.record(client.get("/api/metrics", HTTP_AUTHORIZATION=f"Bearer {canary}"))
    responses.record(client.get(queued["Location"]))
    responses.record(
        client.get(
            f"/api/orgs/acme/credentials/?api_key={canary}&token={forms['base64']}",
            HTTP_AUTHORIZATION=f"Bearer {canary}",
            HTTP_X_API_KEY=canary,
            HTTP_COOKIE=f"sessionid={canary}",
        )
    )
    web_request_spans = [s for s in web_spans.spans if s.attributes.get("http.route")]
    assert any(
        list(s.attributes.get("http.request.header.authorization", ())) == ["[REDACTED]"]
        for s in web_request_spans
    )

    # Let the worker export everything it still buffers, then scan.
    assert celery_worker_flushes(celery_worker)
    run.refresh_from_db()
    surfaces = {
        "web-process log lines": json_logs.text,
        "worker log file": celery_worker.log_text(),
        "worker stdout/stderr": celery_worker.output_text(),
        "web spans": web_spans.text(),
        "worker spans (OTLP)": otlp_collector.text(),
        "HTTP responses": responses.text(),
        "stored run output": json.dumps(
            list(AgentRun.objects.values("output", "error")), default=str
        ),
        "audit rows": json.dumps(list(AuditEvent.objects.values()), default=str),
        "published task messages": "\n".join(published),
    }
    assert all(surfaces.values()), [name for name, text in surfaces.items() if not text]
    leaks = [
        f"{form_name} form in {surface}"
        for surface, text in surfaces.items()
        for form_name, form in forms.items()
        if form in text
    ]
    assert leaks == []


def celery_worker_flushes(worker) -> bool:
    from tests.worker_probes import flush_spans

    return bool(flush_spans.apply_async().get(timeout=30))
