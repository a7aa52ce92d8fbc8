"""A target that echoes the credential back, in whatever encoding its stack happens to use,
does not put it into the run's stored output: every role reads that output (auditors
included), and so does the agent's token.

The endpoint below answers with what it received, escaped the way common stacks escape it:
JSON with and without ASCII escapes, JSON with escaped slashes (PHP's default), HTML, hex, the
basic-auth header's base64 without its scheme, and a split "user:password" secret's password.
"""

from __future__ import annotations

import base64
import html
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.models import RunStatus
from agents.services import BindingSpec, agent_create, agent_run_create
from credentials.models import CredentialKind
from credentials.services import credential_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _escapes(value: str) -> list[str]:
    raw = value.encode()
    return [
        json.dumps(value),
        json.dumps(value, ensure_ascii=False),
        json.dumps(value).replace("/", "\\/"),
        json.dumps(value, ensure_ascii=False).replace("/", "\\/"),
        html.escape(value),
        raw.hex(),
        raw.hex().upper(),
    ]


class _EchoEndpoint:
    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                key = self.headers.get("X-Api-Key", "")
                if self.path.startswith("/reason"):
                    # The secret in the status line's reason phrase, where the run's error
                    # quotes it, after padding that puts its 500th character inside it.
                    pad = int(self.path.rpartition("=")[2])
                    self.send_response(401, "x" * pad + key)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                _, _, encoded = self.headers.get("Authorization", "").partition(" ")
                password = base64.b64decode(encoded).decode().partition(":")[2] if encoded else ""
                lines = [*_escapes(key), encoded, password, *_escapes(password)]
                body = "\n".join(lines).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/echo"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo() -> Iterator[_EchoEndpoint]:
    endpoint = _EchoEndpoint()
    yield endpoint
    endpoint.close()


def _forms(secret: str) -> set[str]:
    forms = {secret, *(form.strip('"') for form in _escapes(secret))}
    return {form for form in forms if len(form) >= 4}


def _run(personas, celery_worker, echo, name, secret, binding):
    credential = credential_create(
        org=personas.org,
        acting_user=personas.admin,
        name=name,
        secret=secret,
        kind=CredentialKind.BASIC_AUTH if binding[0] == "basic_auth" else CredentialKind.API_KEY,
    )
    agent = agent_create(
        org=personas.org,
        acting_user=personas.admin,
        name=name,
        config={"method": "GET", "url": echo.url},
        bindings=[BindingSpec("cred", credential.id, *binding)],
    )
    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def test_a_header_credential_echoed_escaped_or_hex_encoded_is_redacted(
    personas, celery_worker, echo
):
    secret = f'sk/live+"<é>&-{uuid.uuid4().hex}'

    run = _run(personas, celery_worker, echo, "escaped", secret, ("header", "X-Api-Key"))

    stored = json.dumps(run.output, ensure_ascii=False)
    assert run.output["body"].count("[REDACTED]") >= 7
    for form in _forms(secret):
        assert form not in run.output["body"], form
        assert form not in stored, form
    assert secret not in celery_worker.log_text()


def test_a_secret_echoed_in_the_reason_phrase_is_redacted_before_any_cut(
    personas, celery_worker, echo
):
    """The run's error ("endpoint answered 401 <reason>") is cut to 500 characters for its
    audit event and log line: cut before redaction, the head of a secret straddling the cut
    no longer matched and was kept there, readable by every role that reads the trail."""
    from audit.models import AuditEvent

    secret = f"sk-live-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    prefix = "endpoint answered 401 "
    pad = 500 - len(prefix) - 20  # the cut falls 20 characters into the secret
    credential = credential_create(
        org=personas.org, acting_user=personas.admin, name="reason", secret=secret
    )
    agent = agent_create(
        org=personas.org,
        acting_user=personas.admin,
        name="reason",
        config={"method": "GET", "url": echo.url.replace("/echo", f"/reason?pad={pad}")},
        bindings=[BindingSpec("cred", credential.id, "header", "X-Api-Key")],
    )
    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)

    assert run.status == RunStatus.FAILED
    assert secret not in run.error
    finish = AuditEvent.objects.get(action="agent_run.finish", target_id=str(run.id))
    head = secret[:16]
    assert head not in json.dumps(finish.metadata)
    celery_worker.wait_for_log(
        lambda r: (
            r.get("jobId") == str(run.id)
            and "agent run" in str(r.get("message"))
            and r.get("status") == "failed"
        )
    )
    assert head not in celery_worker.log_text()


def test_a_basic_auth_credential_echoed_as_base64_or_as_its_password_is_redacted(
    personas, celery_worker, echo
):
    password = f"pw/{uuid.uuid4().hex}"
    with_user = _run(personas, celery_worker, echo, "with-user", password, ("basic_auth", "bob"))
    split = _run(personas, celery_worker, echo, "split", f"carol:{password}x", ("basic_auth", ""))

    for run, sent in ((with_user, f"bob:{password}"), (split, f"carol:{password}x")):
        header_value = base64.b64encode(sent.encode()).decode()
        sent_password = sent.partition(":")[2]
        body = run.output["body"]
        assert header_value not in body
        for form in _forms(sent_password):
            assert form not in body, form
