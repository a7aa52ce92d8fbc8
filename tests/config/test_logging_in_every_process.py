"""Every process logs one JSON line per record through the redaction filter: the web server
(runserver, its own request lines included), management commands, and Celery workers (their
own loggers included). No handler anywhere formats a record without redacting it first."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from django.conf import settings

from tests.conftest import TEST_KEYS

INVENTORY = """
import json, logging
from config.logging import is_redacting
loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
print(json.dumps([
    {"logger": l.name, "handler": type(h).__name__, "redacting": is_redacting(h),
     "silent": isinstance(h, logging.NullHandler)}
    for l in loggers if isinstance(l, logging.Logger) for h in l.handlers
] + [{"logger": "(last resort)", "handler": type(logging.lastResort).__name__,
      "redacting": is_redacting(logging.lastResort), "silent": False}]))
"""


@pytest.fixture
def process_env(tmp_path):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AGENT_CREDENTIAL_", "DATABASE_URL", "LOG_", "CELERY_"))
    }
    env.update(TEST_KEYS)
    env.update(
        {
            "EVERESTHOOD_ENV_FILE": "",
            "EVERESTHOOD_VAR_DIR": str(tmp_path / "var"),
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        }
    )
    return env


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # fails on any line that is not JSON


def test_a_management_command_logs_json_lines_through_the_redaction(process_env, canary):
    code = (
        "import logging, warnings\n"
        f"logging.getLogger('django.request').warning('rejected ?token={canary}&page=1', "
        f"extra={{'headers': {{'Authorization': 'Bearer {canary}'}}}})\n"
        f"logging.getLogger('celery.app.trace').error('Bearer {canary}')\n"
        f"warnings.warn('deprecated: token {canary}')\n" + INVENTORY
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=settings.BASE_DIR,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    records = _json_lines(result.stderr)
    assert [(r["logger"], r["message"]) for r in records] == [
        ("django.request", "rejected ?token=[REDACTED]&page=1"),
        ("celery.app.trace", "Bearer [REDACTED]"),
        ("py.warnings", records[2]["message"]),
    ]
    assert records[0]["headers"] == {"Authorization": "[REDACTED]"}
    assert "deprecated: token [REDACTED]" in records[2]["message"]
    assert {"timestamp", "level", "requestId", "jobId", "trace_id", "span_id"} <= set(records[0])
    handlers = json.loads(result.stdout.strip().splitlines()[-1])
    assert handlers, "no handler at all"
    # A NullHandler (Python's warnings logger gets one) writes nothing anywhere.
    assert [h for h in handlers if not (h["redacting"] or h["silent"])] == []
    assert canary not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_web_server_logs_its_request_lines_as_redacted_json(process_env, canary, tmp_path):
    port = _free_port()
    stderr_path = tmp_path / "web.stderr"
    with stderr_path.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=settings.BASE_DIR,
            env=process_env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/accounts/login/?token={canary}&next=/",
                        timeout=5,
                    ) as response:
                        assert response.status == 200
                        request_id = response.headers["X-Request-ID"]
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            deadline = time.monotonic() + 10
            while "django.server" not in stderr_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            server.terminate()
            server.wait(timeout=15)
    text = stderr_path.read_text()
    records = _json_lines(text)
    (line,) = [r for r in records if r["logger"] == "django.server"]
    assert line["message"].startswith('"GET /accounts/login/?token=[REDACTED]&next=/ HTTP/1.1" 200')
    assert request_id
    assert canary not in text


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_worker_has_no_handler_that_skips_the_redaction(celery_worker):
    from tests.worker_probes import logging_handlers

    handlers = logging_handlers.apply_async().get(timeout=30)
    assert any(h["logger"] == "root" and h["redacting"] for h in handlers)
    # Celery gives some of its loggers a NullHandler, which writes nothing anywhere.
    assert [h for h in handlers if not (h["redacting"] or h["silent"])] == []
