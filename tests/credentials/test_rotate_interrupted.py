"""A rotation killed at any point (SIGKILL of a real process, or Ctrl-C) loses nothing and
resumes: every credential decrypts, all end under the new key, the row count never changes."""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from audit.models import AuditEvent
from credentials.models import Credential, KeyUsage
from tests.credentials.conftest import command_env, decrypt_all, envelopes, store_credentials

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
# 160 batches: far more than the progress lines a one-page pipe holds (~30), so the process
# is always still running when the test acts on it.
ROWS, BATCH = 800, 5


def start_rotation(*extra: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "credential_keys",
            "rotate",
            "--to",
            "local:v2",
            "--batch-size",
            str(BATCH),
            *extra,
        ],
        cwd=ROOT,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # A one-page pipe: the rotation cannot run more than a few batches ahead of what this test
    # has read, so "kill after the n-th progress line" lands close to that batch.
    fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    return process


def read_batches(process: subprocess.Popen[str], count: int) -> list[dict]:
    assert process.stdout is not None
    lines: list[dict] = []
    while len(lines) < count:
        line = process.stdout.readline()
        assert line, f"rotation ended early: {process.stderr.read() if process.stderr else ''}"
        lines.append(json.loads(line))
    return lines


def test_rotation_killed_at_several_points_resumes_and_loses_nothing(personas):
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        secrets_by_id = store_credentials(personas.org, ROWS)
    progress_seen = []

    for kill_after in (1, 4, 2):
        process = start_rotation()
        progress_seen += read_batches(process, kill_after)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        stored = envelopes()
        assert len(stored) == ROWS == Credential.objects.count()
        assert decrypt_all() == secrets_by_id  # under v1 or v2, every row opens
        on_v2 = sum(1 for key, _, _ in stored.values() if key == "local:v2")
        assert 0 < on_v2 < ROWS
        # The wrap counter moved with the committed batches only.
        assert KeyUsage.objects.get(key_id="local:v2").wraps == on_v2

    process = start_rotation()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["event"] == "done"
    assert lines[-1]["remaining"] == 0

    stored = envelopes()
    assert len(stored) == ROWS
    assert {key for key, _, _ in stored.values()} == {"local:v2"}
    assert decrypt_all() == secrets_by_id
    # Never wrapped twice: one wrap per row under v2 across all four runs.
    assert KeyUsage.objects.get(key_id="local:v2").wraps == ROWS
    assert AuditEvent.objects.filter(action="credential_keys.rotate_start").count() == 4
    assert AuditEvent.objects.filter(action="credential_keys.rotate").count() == 1


def test_ctrl_c_stops_after_rolling_back_the_batch_in_flight_and_says_how_to_resume(personas):
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        secrets_by_id = store_credentials(personas.org, ROWS)
    process = start_rotation()
    read_batches(process, 2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 130
    assert "interrupted: every finished batch is committed" in err
    assert "run the same command again to resume" in err
    assert decrypt_all() == secrets_by_id
    stopped = AuditEvent.objects.get(action="credential_keys.rotate")
    assert (stopped.outcome, stopped.metadata["interrupted"]) == ("failure", True)
    assert stopped.metadata["remaining"] == sum(
        1 for key, _, _ in envelopes().values() if key == "local:v1"
    )

    process = start_rotation()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert {key for key, _, _ in envelopes().values()} == {"local:v2"}
    assert decrypt_all() == secrets_by_id
