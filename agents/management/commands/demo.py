"""`manage.py demo`: one agent run through the real path, shown the way an operator sees it.

The command plays the web tier: it stores a fresh random secret for the demo credential, points
the demo agent at a local endpoint that accepts only that secret, and queues a run under a new
requestId. A real Celery worker (one already serving the broker, else one started here and
stopped afterwards) decrypts the credential and calls the endpoint. The command then prints the
run, the worker's JSON log lines for its jobId and the run's audit trail.

This process never decrypts (only workers may): it proves the credential arrived through what
the endpoint received, and it proves the secret leaked nowhere by scanning everything it is
about to print before printing it.
"""

from __future__ import annotations

import base64
import fcntl
import hmac
import json
import secrets
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.models import Q
from kombu.exceptions import OperationalError as BrokerError
from kombu.utils.url import maybe_sanitize_url

from agents.demo_endpoint import CredentialCheckingEndpoint, ReceivedRequest
from agents.models import Agent, AgentRun, Placement, RunStatus
from agents.services import BindingSpec, agent_create, agent_run_create, agent_update
from agents.tasks import ping
from agents.worker_process import WorkerProcess, WorkerStartError
from audit.models import AuditEvent, Outcome
from config import context
from credentials import crypto
from credentials.models import Credential
from credentials.selectors import credential_list
from credentials.services import credential_create, credential_replace_secret
from orgs.models import Organization, Role
from orgs.selectors import scoped
from orgs.services import membership_set, org_create

ORG_SLUG = "demo"
USERNAME = "demo"
CREDENTIAL_NAME = "demo-endpoint-key"
AGENT_NAME = "demo-agent"
BEARER_TEMPLATE = "Bearer {secret}"

RUN_POLL_SECONDS = 0.02
# How often the wait also asks the result backend: a worker on another database finishes the
# task ("missing") while our row stays queued, and the demo should say so, not time out.
RESULT_CHECK_SECONDS = 0.25
PING_WAIT_SECONDS = 1.5
# A probe nobody answers stays in the queue; expiring it keeps a later worker from running it.
PING_EXPIRES_SECONDS = 2.0
LOG_WAIT_SECONDS = 5.0
WORKER_START_SECONDS = 60.0
FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED})
# The last line a worker logs inside a task's context (Celery's "Task ... succeeded in").
TASK_TRACE_LOGGER = "celery.app.trace"


@dataclass
class DemoWorker:
    """Where the run executes and where its JSON log lines can be read."""

    process: WorkerProcess | None  # None: a worker was already serving the broker
    log_file: Path | None  # None: a serving worker whose log destination we do not know
    scratch_dir: Path | None  # the started worker's output; removed after a clean run


@dataclass(frozen=True)
class DemoSetup:
    org: Organization
    user: User
    credential: Credential
    agent: Agent
    credential_created: bool
    agent_created: bool


class Command(BaseCommand):
    help = (
        "Run the demo agent once on a real Celery worker (starting one if none serves the "
        "broker) and show its outcome, its worker log lines and its audit trail."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="seconds to wait for the run to finish (default 60)",
        )

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        if crypto.decryption_enabled():
            # Only workers may decrypt; a demo that could would prove nothing about the path.
            raise CommandError("This process has the worker role; run the demo as a command.")
        with _only_one_demo(), ExitStack() as cleanup:
            worker = self._find_or_start_worker(cleanup)
            report, problems = self._run_demo(worker, timeout=timeout)
            self.stdout.write(report)
            if worker.process is not None:
                self.stdout.write("Stopping the worker this demo started ...")
                worker.process.stop()
                self.stdout.write("Worker stopped.")
            if worker.scratch_dir is not None and not problems:
                shutil.rmtree(worker.scratch_dir, ignore_errors=True)
        if problems:
            kept = (
                f" (the started worker's output is kept in {worker.scratch_dir})"
                if worker.scratch_dir is not None
                else ""
            )
            raise CommandError("Demo failed: " + "; ".join(problems) + kept)

    # --- worker -------------------------------------------------------------------------------

    def _find_or_start_worker(self, cleanup: ExitStack) -> DemoWorker:
        configured = Path(settings.LOG_FILE) if settings.LOG_FILE else None
        if _worker_is_serving():
            return DemoWorker(process=None, log_file=configured, scratch_dir=None)
        scratch = Path(tempfile.mkdtemp(prefix="everesthood-demo-"))
        log_file = configured or scratch / "worker.jsonl"
        self.stdout.write(
            f"No worker is serving the broker: starting one (JSON log: {log_file}) ..."
        )
        process = WorkerProcess(
            env={"LOG_FILE": str(log_file)},
            log_path=scratch / "worker-output.log",
            concurrency=1,
        )
        cleanup.callback(process.stop)
        started = time.monotonic()
        try:
            process.start(timeout=WORKER_START_SECONDS)
        except WorkerStartError as exc:
            raise CommandError(
                f"Could not start a worker: {exc}. "
                f"Its output is in {scratch / 'worker-output.log'}."
            ) from None
        self.stdout.write(f"Worker ready after {time.monotonic() - started:.1f} s.")
        return DemoWorker(process=process, log_file=log_file, scratch_dir=scratch)

    # --- the run ---------------------------------------------------------------------------

    def _run_demo(self, worker: DemoWorker, *, timeout: float) -> tuple[str, list[str]]:
        secret = f"demo-{secrets.token_urlsafe(24)}"
        request_id = context.new_request_id()
        problems: list[str] = []
        with CredentialCheckingEndpoint(secret) as endpoint:
            log_offset = _file_size(worker.log_file)
            # Everything the demo writes carries the requestId, as a web request's writes do.
            with context.bound(request_id=request_id):
                setup = _prepare(endpoint_url=endpoint.url, secret=secret)
                queued = agent_run_create(agent=setup.agent, acting_user=setup.user)
            run_id = str(queued.id)
            run, wait_problem = _wait_for_run(run_id, worker=worker.process, timeout=timeout)
            if wait_problem:
                problems.append(wait_problem)
            received = list(endpoint.received)
        log_lines = _wait_for_job_lines(worker.log_file, log_offset, run_id, finished=not problems)
        events = list(
            AuditEvent.objects.filter(Q(job_id=run_id) | Q(request_id=request_id)).order_by(
                "occurred_at", "id"
            )
        )

        expected = f"Bearer {secret}".encode()
        matched = sum(
            hmac.compare_digest(r.headers.get("Authorization", "").encode(), expected)
            for r in received
        )
        # When the run never finished, the checks below would only repeat that one cause.
        if not wait_problem:
            if run.status != RunStatus.SUCCEEDED:
                problems.append(f"the run {run.status}: {run.error or 'no error recorded'}")
            if len(received) != 1 or matched != 1:
                problems.append(
                    f"the endpoint received {len(received)} request(s), {matched} with the "
                    f"right credential (expected exactly one, with it)"
                )
            if not any(
                e.action == "credential.decrypt"
                and e.outcome == Outcome.SUCCESS
                and e.job_id == run_id
                for e in events
            ):
                problems.append("the audit trail has no successful credential.decrypt for this job")
            if worker.process is not None and not log_lines:
                problems.append(f"no JSON log line with jobId {run_id} in {worker.log_file}")

        sections = [
            _setup_section(setup, worker),
            _run_section(run, request_id),
            _endpoint_section(received, matched),
            _log_section(worker, run_id, log_lines),
            _audit_section(events, run_id, request_id),
        ]
        report = "\n".join(sections)
        leaked = [form for form in _secret_forms(secret) if form in report]
        if leaked:
            # Never print a report that would show the secret; say so instead.
            return "", [*problems, "the report contained the secret, so it was not printed"]
        report += (
            "\n== Secret check ==\n"
            f"The secret stored for {CREDENTIAL_NAME} (and its URL and base64 forms) appears "
            f"nowhere in this output ({len(report)} characters scanned).\n"
            "This process never decrypted it: only the worker did.\n"
        )
        return report, problems


def _worker_is_serving() -> bool:
    """A ping round trip: broker-agnostic, and proves a worker consumes our default queue."""
    try:
        result = ping.apply_async(expires=PING_EXPIRES_SECONDS)
    except BrokerError as exc:
        raise CommandError(
            f"Cannot reach the Celery broker at {maybe_sanitize_url(settings.CELERY_BROKER_URL)}:"
            f" {exc}"
        ) from None
    try:
        return bool(result.get(timeout=PING_WAIT_SECONDS, interval=RUN_POLL_SECONDS) == "pong")
    except CeleryTimeoutError:
        return False


def _prepare(*, endpoint_url: str, secret: str) -> DemoSetup:
    """Create the demo org, user, credential and agent, or bring the existing ones up to date."""
    user = User.objects.filter(username=USERNAME).first()
    if user is None:
        user = User.objects.create_user(username=USERNAME)  # no password: it never logs in
    org = Organization.objects.filter(slug=ORG_SLUG).first()
    if org is None:
        org = org_create(slug=ORG_SLUG, name="Demo", owner=user)
    else:
        membership_set(org=org, user=user, role=Role.OWNER)

    credential = credential_list(org=org).filter(name=CREDENTIAL_NAME).first()
    credential_created = credential is None
    if credential is None:
        credential = credential_create(
            org=org,
            acting_user=user,
            name=CREDENTIAL_NAME,
            secret=secret,
            description="Used by `manage.py demo`; replaced with a new random secret each run.",
        )
    else:
        credential = credential_replace_secret(
            credential=credential, acting_user=user, secret=secret
        )

    config = {"method": "GET", "url": endpoint_url}
    bindings = [
        BindingSpec(
            slot="auth",
            credential_id=credential.id,
            placement=Placement.HEADER,
            target="Authorization",
            template=BEARER_TEMPLATE,
        )
    ]
    agent = scoped(Agent, org=org).filter(name=AGENT_NAME).first()
    agent_created = agent is None
    try:
        if agent is None:
            agent = agent_create(
                org=org,
                acting_user=user,
                name=AGENT_NAME,
                config=config,
                description="Calls a local endpoint that accepts only the demo credential.",
                bindings=bindings,
            )
        else:
            agent = agent_update(agent=agent, acting_user=user, config=config, bindings=bindings)
    except ValidationError as exc:
        raise CommandError(f"The demo agent could not be saved: {exc.messages}") from None
    return DemoSetup(org, user, credential, agent, credential_created, agent_created)


def _wait_for_run(
    run_id: str, *, worker: WorkerProcess | None, timeout: float
) -> tuple[AgentRun, str]:
    """The run once finished (or as it stands when waiting ends), and why waiting ended early."""
    deadline = time.monotonic() + timeout
    next_result_check = time.monotonic() + RESULT_CHECK_SECONDS
    task = AsyncResult(run_id)
    while True:
        run = AgentRun.objects.select_related("agent").get(pk=run_id)
        if run.status in FINISHED:
            return run, ""
        now = time.monotonic()
        if now >= deadline:
            return run, f"the run was still {run.status} after {timeout:.0f} s"
        if worker is not None and not worker.running:
            return run, "the worker started for the demo exited during the run"
        if now >= next_result_check:
            next_result_check = now + RESULT_CHECK_SECONDS
            if task.ready():
                # The task ended but our row did not move: that worker uses another database.
                return run, (
                    f"a worker finished the task ({task.state}: {task.result!r}) but this "
                    f"database's run is still {run.status}: the serving worker is connected "
                    f"to another database"
                )
        time.sleep(RUN_POLL_SECONDS)


def _file_size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except FileNotFoundError:
        return 0


def _job_lines(path: Path, offset: int, job_id: str) -> list[str]:
    try:
        with path.open("rb") as handle:
            if offset > path.stat().st_size:
                offset = 0  # the file was rotated or truncated since we looked
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return []
    lines = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # not JSON, or a line still being written
        if isinstance(record, dict) and record.get("jobId") == job_id:
            lines.append(line)
    return lines


def _wait_for_job_lines(
    path: Path | None, offset: int, job_id: str, *, finished: bool
) -> list[str]:
    """The job's lines, waiting briefly for the worker's last one: it logs after the row."""
    if path is None:
        return []
    deadline = time.monotonic() + (LOG_WAIT_SECONDS if finished else 0)
    while True:
        lines = _job_lines(path, offset, job_id)
        if any(json.loads(line).get("logger") == TASK_TRACE_LOGGER for line in lines):
            return lines
        if time.monotonic() >= deadline:
            return lines
        time.sleep(RUN_POLL_SECONDS)


def _secret_forms(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        base64.b64encode(raw).decode("ascii"),
        base64.b64encode(raw).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
    }


@contextmanager
def _only_one_demo() -> Iterator[None]:
    # Two demos at once would each replace the secret and repoint the agent under the other.
    # A file lock covers one machine; demos on several hosts sharing a database are not guarded.
    path = Path(settings.VAR_DIR) / "demo.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CommandError(
                "Another `manage.py demo` is running; try again when it ends."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- report sections ---------------------------------------------------------------------------


def _setup_section(setup: DemoSetup, worker: DemoWorker) -> str:
    broker = maybe_sanitize_url(settings.CELERY_BROKER_URL)
    where = (
        "started by this demo (stopped when it ends)"
        if worker.process is not None
        else "already serving the broker"
    )
    return "\n".join(
        [
            "== Setup ==",
            f"Database:   {connection.vendor} ({connection.settings_dict['NAME']})",
            f"Broker:     {broker} (queue {settings.CELERY_TASK_DEFAULT_QUEUE})",
            f"Worker:     {where}",
            f"Org/user:   {setup.org.slug} / {setup.user.username} (owner)",
            f"Credential: {setup.credential.name} ({setup.credential.id}), "
            f"{'created' if setup.credential_created else 'secret replaced'} with a new random "
            f"secret under key {setup.credential.key_id}",
            f"Agent:      {setup.agent.name} ({setup.agent.id}), "
            f"{'created' if setup.agent_created else 'updated'}: "
            f"{setup.agent.config['method']} {setup.agent.config['url']}",
            f"Binding:    slot auth -> header Authorization: {BEARER_TEMPLATE}",
            "",
        ]
    )


def _run_section(run: AgentRun, request_id: str) -> str:
    took = (
        f"{(run.finished_at - run.queued_at).total_seconds() * 1000:.1f} ms"
        if run.finished_at is not None
        else "-"
    )
    return "\n".join(
        [
            "== Run ==",
            f"jobId:      {run.id}",
            f"requestId:  {request_id}",
            f"status:     {run.status}",
            f"queued to finished: {took}",
            f"output:     {json.dumps(run.output, sort_keys=True)}",
            f"error:      {run.error or '-'}",
            "",
        ]
    )


def _endpoint_section(received: list[ReceivedRequest], matched: int) -> str:
    verdict = (
        "yes: the worker sent the stored credential as Authorization: Bearer ..."
        if len(received) == 1 and matched == 1
        else "NO"
    )
    return "\n".join(
        [
            "== Endpoint ==",
            f"Requests received: {len(received)}; carrying the right credential: {matched}",
            f"Credential delivered: {verdict}",
            "",
        ]
    )


def _log_section(worker: DemoWorker, job_id: str, lines: list[str]) -> str:
    if worker.log_file is None:
        return "\n".join(
            [
                f"== Worker log lines for jobId {job_id} ==",
                "LOG_FILE is not set here, so the serving worker's lines are wherever it logs "
                "(its stderr, e.g. the `make run` terminal). Pick them out of its JSON lines with:",
                f"  jq -c 'select(.jobId == \"{job_id}\")'",
                "",
            ]
        )
    header = f"== Worker log lines for jobId {job_id} ({len(lines)}, from {worker.log_file}) =="
    if not lines:
        return "\n".join(
            [header, "None found: the serving worker may log to another destination.", ""]
        )
    return "\n".join([header, *lines, ""])


def _audit_section(events: list[AuditEvent], job_id: str, request_id: str) -> str:
    rows = [("time (UTC)", "action", "outcome", "actor", "target", "via")]
    for event in events:
        rows.append(
            (
                event.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                event.action,
                event.outcome,
                f"{event.actor_type}:{event.actor_label or event.actor_id}",
                f"{event.target_type}:{event.target_label or event.target_id}",
                "jobId" if event.job_id == job_id else "requestId",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(
        [f"== Audit trail (jobId {job_id} or requestId {request_id}, oldest first) ==", *table, ""]
    )
