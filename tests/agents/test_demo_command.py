"""`manage.py demo` runs the whole path on real processes, on a bare embedded setup, twice.

The demo runs as a subprocess on a fresh SQLite database and SQLite broker of its own, so it
must find no worker and start (and stop) one itself. Whatever this test session uses (CI runs
it a second time with PostgreSQL and Redis), the demo gets the embedded default.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.worker

# Variables that would point the demo at this session's database, broker, queue, log or keys.
_SESSION_ONLY = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CELERY_TASK_DEFAULT_QUEUE",
    "LOG_FILE",
    "SQLITE_TEST_PATH",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
}


@pytest.fixture
def demo_env(tmp_path):
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _SESSION_ONLY and not name.startswith("AGENT_CREDENTIAL_")
    }
    env.update(
        {
            "EVERESTHOOD_ENV_FILE": "",
            "EVERESTHOOD_VAR_DIR": str(tmp_path / "var"),
            "DEBUG": "true",
            "AGENT_CREDENTIAL_KEY_V1": secrets.token_hex(32),
        }
    )
    return env


def _manage(env, *args, timeout=90):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _section(output: str, title: str) -> list[str]:
    """The lines of the report section whose header starts with `== title`, up to a blank."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"== {title}"))
    body = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        body.append(line)
    return body


def _assert_demo_succeeded(result) -> str:
    output = result.stdout
    assert result.returncode == 0, f"stdout:\n{output}\nstderr:\n{result.stderr[-4000:]}"
    assert "No worker is serving the broker: starting one" in output
    assert re.search(r"^status:\s+succeeded$", output, re.MULTILINE)
    job_match = re.search(r"^jobId:\s+(\S+)$", output, re.MULTILINE)
    assert job_match, output
    job_id = job_match.group(1)

    records = [json.loads(line) for line in _section(output, "Worker log lines")]
    assert records, "no worker log lines printed"
    assert {r["jobId"] for r in records} == {job_id}
    assert {"agent run started", "agent run succeeded"} <= {r["message"] for r in records}

    audit = [line.split() for line in _section(output, "Audit trail")[1:]]
    decrypts = [row for row in audit if row[2] == "credential.decrypt"]
    assert decrypts, "no credential.decrypt row in the audit trail"
    assert decrypts[0][3] == "success"
    assert decrypts[0][4] == "agent:demo-agent"
    assert [row[2] for row in audit][-1] == "agent_run.finish"

    # The endpoint echoes the Authorization header: the stored output shows it redacted.
    assert "Bearer [REDACTED]" in output
    assert "Credential delivered: yes" in output
    assert "appears nowhere in this output" in output
    assert "Worker stopped." in output
    return job_id


def test_demo_runs_end_to_end_and_again_on_the_same_database(demo_env):
    migrated = _manage(demo_env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr[-4000:]

    first = _manage(demo_env, "demo")
    first_job = _assert_demo_succeeded(first)
    assert "created with a new random secret" in first.stdout

    # Same database: org, user, credential and agent are reused; the secret and URL are new.
    # Starting a worker again also shows the first demo stopped its own.
    second = _manage(demo_env, "demo")
    second_job = _assert_demo_succeeded(second)
    assert "secret replaced with a new random secret" in second.stdout
    assert "demo-agent" in second.stdout
    assert second_job != first_job
