"""Every jq filter in docs/troubleshooting.md runs against log lines this project writes (the
web process's and a real worker's, for a scenario like the one the doc's samples come from)
and finds something."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from django.conf import settings
from django.test import Client

from agents.models import RunStatus
from tests.raw_storage import read_envelope, write_envelope

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

DOC = settings.BASE_DIR / "docs" / "troubleshooting.md"
REQUEST_ID = "req-doc-failing-run-01"


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def jq():
    path = shutil.which("jq")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("jq is not installed (.ci/run installs it)")
        pytest.skip("jq is not installed: apt-get install jq")
    return path


def _run(client, agent_id, request_id, worker):
    queued = client.post(f"/api/orgs/acme/agents/{agent_id}/runs/", HTTP_X_REQUEST_ID=request_id)
    run = worker.wait_for_run(queued.json()["id"])
    worker.wait_for_log(
        lambda r: r.get("jobId") == str(run.id) and r["logger"] == "celery.app.trace"
    )
    return run


def test_every_filter_in_the_troubleshooting_doc_runs_and_finds_lines(
    jq, personas, api_for, celery_worker, endpoint, canary, json_logs, tmp_path, settings
):
    client = api_for(personas.member)
    agents = []
    for name in ("charges", "repos"):
        credential = client.post(
            "/api/orgs/acme/credentials/", {"name": name, "secret": canary}, format="json"
        ).json()
        agents.append(
            client.post(
                "/api/orgs/acme/agents/",
                {
                    "name": name,
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
        )
    assert _run(client, agents[0]["id"], "req-doc-good-run-01", celery_worker).status == (
        RunStatus.SUCCEEDED
    )
    key_id, wrapped, ciphertext = read_envelope(credential["id"])
    write_envelope(
        credential["id"], (key_id, wrapped, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]))
    )
    assert _run(client, agents[1]["id"], REQUEST_ID, celery_worker).status == RunStatus.FAILED

    settings.METRICS_TOKEN = "t" * 40
    web = Client()
    web.force_login(personas.member)
    assert web.get("/api/metrics").status_code == 403
    assert Client().get("/api/metrics?access_token=abcdef123456").status_code == 401
    assert Client().get("/api/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/accounts/login/", HTTP_HOST="vault.evil.example").status_code == 400

    lines = json_logs.lines + celery_worker.log_text().splitlines()
    records = sorted(
        (json.loads(line) for line in lines if line.strip()), key=lambda r: r["timestamp"]
    )
    log = tmp_path / "everesthood.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert canary not in log.read_text(encoding="utf-8")

    setup, *filters = _shell_blocks()
    assert len(filters) >= 12
    env = {**os.environ, "LOG": str(log), "RID": REQUEST_ID}
    for command in filters:
        result = subprocess.run(
            ["bash", "-e", "-c", setup + command],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.strip() not in ("", "[]", "null"), command
