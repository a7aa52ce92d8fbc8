"""Shared fixtures: keys, the five personas, API clients, a real Celery worker (exporting its
spans to an OTLP receiver of the session), a local endpoint that accepts one credential, a
JSON log capture with the production filters and a capture of this process's spans."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test.utils import override_settings
from rest_framework.test import APIClient

from agents.demo_endpoint import CredentialCheckingEndpoint
from agents.models import Agent, AgentRun, AgentToken, RunStatus
from agents.services import BindingSpec, agent_create, agent_run_create, agent_token_issue
from agents.worker_process import WorkerProcess, database_url
from config import telemetry
from config.celery import app as celery_app
from config.logging import ContextFilter, JsonLineFormatter, RedactionFilter
from credentials.models import Credential
from credentials.services import credential_create
from orgs.models import Organization, Role
from orgs.services import membership_set, org_create
from tests.otlp_collector import OtlpCollector

# Fresh keys for every test session: nothing key-like is committed.
TEST_KEYS = {
    "AGENT_CREDENTIAL_KEY_V1": secrets.token_hex(32),
    "AGENT_CREDENTIAL_KEY_V2": secrets.token_hex(32),
}
SESSION_QUEUE = f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def _test_keys_and_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Keys for this session, and a broker/queue of the session's own.

    With CELERY_BROKER_URL set (CI: Redis) the tests use that broker with a queue nobody else
    consumes; otherwise an embedded SQLite broker in a temporary folder.
    """
    broker_dir = tmp_path_factory.mktemp("broker")
    broker_url = (
        os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{broker_dir}/broker.sqlite3"
    )
    if broker_url.startswith("sqla+"):
        result_backend = f"db+sqlite:///{broker_dir}/results.sqlite3"
    else:
        result_backend = os.environ.get("CELERY_RESULT_BACKEND") or broker_url
    celery_env = {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": result_backend,
        "CELERY_TASK_DEFAULT_QUEUE": SESSION_QUEUE,
    }
    celery_app.conf.update(
        broker_url=broker_url,
        result_backend=result_backend,
        task_default_queue=SESSION_QUEUE,
    )
    with override_settings(
        CREDENTIAL_KEYS=dict(TEST_KEYS),
        AGENT_CREDENTIAL_ACTIVE_KEY=None,
        # Personas are made for almost every test; PBKDF2 would dominate the suite's time.
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    ):
        # This process plays the web: tracing as config.wsgi sets it up (no exporter; tests
        # that read spans add an in-memory one behind the redaction, see `web_spans`).
        telemetry.configure(role="web")
        yield celery_env


@pytest.fixture(autouse=True)
def _audit_trail_emptied_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Transactional tests end with Django's flush, a TRUNCATE of every table; on PostgreSQL
    the audit table's trigger refuses that while it holds events, so empty it first the way
    its owner could (tests/audit/tamper.py). Set up after the database fixture, so this runs
    before its flush."""
    marker = request.node.get_closest_marker("django_db")
    # pytest-django's own rule for a transactional test (its _django_db_helper).
    transactional = bool({"transactional_db", "live_server"} & set(request.fixturenames)) or bool(
        marker
        and (
            marker.kwargs.get("transaction")
            or marker.kwargs.get("reset_sequences")
            or (marker.args and marker.args[0])
        )
    )
    if not transactional:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    yield
    from tests.audit.tamper import empty_audit_trail

    empty_audit_trail()


# --- personas ----------------------------------------------------------------------------


@dataclass
class Personas:
    org: Organization
    other_org: Organization
    owner: User
    admin: User
    member: User
    auditor: User
    outsider: User  # owner of other_org, stranger to org

    def by_role(self, role: str) -> User:
        return {
            "owner": self.owner,
            "admin": self.admin,
            "member": self.member,
            "auditor": self.auditor,
            "outsider": self.outsider,
        }[role]


@pytest.fixture
def personas(db: None) -> Personas:
    users = {}
    for role in ("owner", "admin", "member", "auditor", "outsider"):
        users[role] = User.objects.create_user(username=role, password=f"pw-{role}-{uuid.uuid4()}")
    org = org_create(slug="acme", name="Acme", owner=users["owner"])
    other = org_create(slug="globex", name="Globex", owner=users["outsider"])
    for role in (Role.ADMIN, Role.MEMBER, Role.AUDITOR):
        membership_set(org=org, user=users[role.value], role=role)
    return Personas(org=org, other_org=other, **users)


@pytest.fixture
def api_for() -> Callable[[User], APIClient]:
    def make(user: User) -> APIClient:
        client = APIClient()
        client.force_authenticate(user=user)
        return client

    return make


def new_canary() -> str:
    """A distinctive secret: if it shows up anywhere it should not, a scan finds it."""
    return f"CANARY-{uuid.uuid4().hex}-{secrets.token_urlsafe(12)}"


@pytest.fixture
def canary() -> str:
    return new_canary()


# --- logs ------------------------------------------------------------------------------------


class JsonLogCapture:
    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonLineFormatter())
        self.handler.addFilter(ContextFilter())
        self.handler.addFilter(RedactionFilter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line]


@pytest.fixture
def json_logs() -> Iterator[JsonLogCapture]:
    """Everything logged in this process during the test, formatted exactly as production."""
    capture = JsonLogCapture()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(capture.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture.handler)
        root.setLevel(previous_level)


# --- spans ---------------------------------------------------------------------------------


class SpanCapture:
    def __init__(self) -> None:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()

    @property
    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def text(self) -> str:
        """Every span as the exporter would serialise it, to scan for secrets."""
        return "\n".join(span.to_json(indent=None) for span in self.spans)


@pytest.fixture
def web_spans() -> Iterator[SpanCapture]:
    """Every span this process ends during the test, as an exporter receives it (redacted)."""
    capture = SpanCapture()
    processor = telemetry.export_synchronously(capture.exporter)
    try:
        yield capture
    finally:
        telemetry.remove_span_processor(processor)


@pytest.fixture(scope="session")
def otlp_collector() -> Iterator[OtlpCollector]:
    """Receives the spans the session's worker exports over OTLP/HTTP."""
    collector = OtlpCollector().start()
    try:
        yield collector
    finally:
        collector.stop()


# --- worker and endpoint ------------------------------------------------------------------


@dataclass
class RunningWorker:
    process: WorkerProcess
    log_path: Path
    stdout_path: Path | None = None  # the process's stdout and stderr (stderr: JSON lines too)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def output_text(self) -> str:
        if self.stdout_path is None:
            return ""
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # the line the worker is writing right now
        return records

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first JSON log line matching `predicate`, waiting for the worker to write it."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.log_records():
                if predicate(record):
                    return record
            if time.monotonic() >= deadline or not self.process.running:
                raise AssertionError(f"no such worker log line; log:\n{self.log_text()[-4000:]}")
            time.sleep(0.02)

    def wait_for_run(self, run_id: Any, *, timeout: float = 30.0) -> AgentRun:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = AgentRun.objects.select_related("agent").get(pk=run_id)
            if run.status in {RunStatus.SUCCEEDED, RunStatus.FAILED}:
                return run
            if not self.process.running:
                raise AssertionError(f"worker died; log:\n{self.log_text()[-4000:]}")
            time.sleep(0.02)
        raise AssertionError(f"run {run_id} still {run.status} after {timeout} s")


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    _test_keys_and_broker: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    otlp_collector: OtlpCollector,
) -> Iterator[RunningWorker]:
    """A real `celery worker` process on the test database, broker and queue of this session.

    It exports its spans to `otlp_collector` (capturing every HTTP header its tool sends and
    receives, to prove they are sanitised even then), writes its metrics to this session's
    PROMETHEUS_MULTIPROC_DIR, and imports the test probes of tests.worker_probes.
    """
    from django.db import connection

    log_dir = tmp_path_factory.mktemp("worker")
    log_path = log_dir / "worker.jsonl"
    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AGENT_CREDENTIAL_")
    }
    env.update(TEST_KEYS)
    env.update(_test_keys_and_broker)
    env.update(
        {
            "EVERESTHOOD_ENV_FILE": "",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": db_url,
            "LOG_FILE": str(log_path),
            "LOG_LEVEL": "INFO",
            "CELERY_BROKER_POLLING_INTERVAL": "0.02",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST": ".*",
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE": ".*",
        }
    )
    worker = WorkerProcess(
        env=env,
        inherit_environment=False,
        queue=SESSION_QUEUE,
        log_path=log_dir / "worker-stdout.log",
        include=["tests.worker_probes"],
    )
    worker.start(timeout=60)
    try:
        yield RunningWorker(
            process=worker, log_path=log_path, stdout_path=log_dir / "worker-stdout.log"
        )
    finally:
        worker.stop()


@pytest.fixture
def endpoint(canary: str) -> Iterator[CredentialCheckingEndpoint]:
    with CredentialCheckingEndpoint(canary) as running:
        yield running


def bearer_agent(
    personas: Personas, url: str, secret: str, *, name: str, user: User | None = None
) -> tuple[Credential, Agent]:
    """A credential `<name>-key` holding `secret`, and an agent `name` whose http_request tool
    sends it to `url` as `Authorization: Bearer <secret>`; both acme's, made by `user` (the
    admin unless given)."""
    user = user or personas.admin
    credential = credential_create(
        org=personas.org, acting_user=user, name=f"{name}-key", secret=secret
    )
    agent = agent_create(
        org=personas.org,
        acting_user=user,
        name=name,
        config={"method": "GET", "url": url},
        bindings=[BindingSpec("auth", credential.id, "header", "Authorization", "Bearer {secret}")],
    )
    return credential, agent


@pytest.fixture
def in_process_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process plays the worker, calling agent_run_execute itself: nothing is
    published to the broker, and it may decrypt."""
    from agents.tasks import run_agent
    from credentials.crypto import process_role

    monkeypatch.setattr(run_agent, "apply_async", lambda *args, **kwargs: None)
    monkeypatch.setattr(process_role, "_worker", True)


# --- a populated organisation and a foreign one (permission and token tests) ---------------


@dataclass
class World:
    p: Personas
    newcomer: User  # a user in no organisation, to be added
    credential: Credential  # acme's, created by the admin (not the member's own)
    agent: Agent  # acme's, created by the admin, bound to `credential`
    run: AgentRun
    token: AgentToken  # an acme token of `agent`
    token_plaintext: str
    foreign_credential: Credential  # globex's
    foreign_agent: Agent
    foreign_run: AgentRun
    foreign_token: AgentToken


def _agent(org, user, credential, name):
    return agent_create(
        org=org,
        acting_user=user,
        name=name,
        config={"method": "GET", "url": "https://api.example.com/v1/ping"},
        bindings=[
            BindingSpec(
                slot="auth",
                credential_id=credential.id,
                placement="header",
                target="Authorization",
                template="Bearer {secret}",
            )
        ],
    )


@pytest.fixture
def world(personas: Personas, canary: str) -> World:
    p = personas
    credential = credential_create(org=p.org, acting_user=p.admin, name="billing", secret=canary)
    agent = _agent(p.org, p.admin, credential, "invoicer")
    run = agent_run_create(agent=agent, acting_user=p.admin)
    token, plaintext = agent_token_issue(agent=agent, name="ci", acting_user=p.admin)
    foreign_credential = credential_create(
        org=p.other_org, acting_user=p.outsider, name="billing", secret=canary + "-globex"
    )
    foreign_agent = _agent(p.other_org, p.outsider, foreign_credential, "invoicer")
    foreign_run = agent_run_create(agent=foreign_agent, acting_user=p.outsider)
    foreign_token, _ = agent_token_issue(agent=foreign_agent, name="ci", acting_user=p.outsider)
    return World(
        p=p,
        newcomer=User.objects.create_user(username="newcomer"),
        credential=credential,
        agent=agent,
        run=run,
        token=token,
        token_plaintext=plaintext,
        foreign_credential=foreign_credential,
        foreign_agent=foreign_agent,
        foreign_run=foreign_run,
        foreign_token=foreign_token,
    )
