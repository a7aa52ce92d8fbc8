"""`credential_keys generate | status | verify | retire`: what each prints, and how each refuses
bad input with a clear message, a non-zero exit and no change."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from audit.models import AuditEvent
from tests.conftest import TEST_KEYS
from tests.credentials.conftest import command_env, envelopes, store_credentials
from tests.raw_storage import write_envelope

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("credential_keys", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- generate --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_generate_prints_only_the_next_variable_and_a_fresh_key():
    result = subprocess.run(
        [sys.executable, "manage.py", "credential_keys", "generate"],
        cwd=ROOT,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"AGENT_CREDENTIAL_KEY_V3=[0-9a-f]{64}\n", result.stdout)
    assert run("generate") != run("generate")


def test_generate_never_reuses_a_version_that_rows_still_name(personas):
    with override_settings(
        CREDENTIAL_KEYS={**TEST_KEYS, "AGENT_CREDENTIAL_KEY_V7": "cd" * 32},
        AGENT_CREDENTIAL_ACTIVE_KEY="v7",
    ):
        store_credentials(personas.org, 1)
    # V7 is gone from the environment, but a row still names local:v7.
    assert run("generate").startswith("AGENT_CREDENTIAL_KEY_V8=")


# --- status ----------------------------------------------------------------------------------


def test_status_shows_keys_usage_wraps_and_what_can_be_retired(personas):
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        store_credentials(personas.org, 3)
    store_credentials(personas.org, 2, prefix="new")

    document = json.loads(run("status", "--json"))

    assert document["active_key"] == "local:v2"
    assert document["keys"] == [
        {
            "key_id": "local:v1",
            "provider": "local",
            "configured": True,
            "active": False,
            "credentials": 3,
            "wraps": 3,
            "retirable": False,
        },
        {
            "key_id": "local:v2",
            "provider": "local",
            "configured": True,
            "active": True,
            "credentials": 2,
            "wraps": 2,
            "retirable": False,
        },
    ]
    assert document["problems"] == []
    table = run("status")
    assert re.search(r"local:v1\s+local\s+3\s+3\s+in use", table)
    assert re.search(r"local:v2\s+local\s+yes\s+2\s+2\s+in use", table)
    assert "can be retired: none" in table


def test_status_lists_a_key_no_row_uses_as_retirable_and_a_missing_one_as_an_error(personas):
    store_credentials(personas.org, 2)
    with override_settings(
        CREDENTIAL_KEYS={**TEST_KEYS, "AGENT_CREDENTIAL_KEY_V5": "ef" * 32},
        AGENT_CREDENTIAL_ACTIVE_KEY="v5",
    ):
        store_credentials(personas.org, 1, prefix="v5")
    document = json.loads(run("status", "--json"))
    assert document["retirable"] == ["local:v1"]
    assert [(p["id"], p["level"]) for p in document["problems"]] == [("credentials.E002", "error")]
    assert "AGENT_CREDENTIAL_KEY_V5" in document["problems"][0]["msg"]
    assert "NOT CONFIGURED" in run("status")
    assert "ef" * 32 not in json.dumps(document)


def test_status_with_a_malformed_key_names_the_variable():
    with (
        override_settings(CREDENTIAL_KEYS={"AGENT_CREDENTIAL_KEY_V1": "xyz"}),
        pytest.raises(CommandError, match="AGENT_CREDENTIAL_KEY_V1 is not hexadecimal"),
    ):
        run("status")


# --- verify ----------------------------------------------------------------------------------


def test_verify_counts_by_key_and_succeeds_when_everything_decrypts(personas):
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        store_credentials(personas.org, 3)
    store_credentials(personas.org, 4, prefix="b")
    assert run("verify").splitlines() == [
        "local:v1: 3 ok, 0 failed",
        "local:v2: 4 ok, 0 failed",
        "all 7 credential(s) decrypt",
    ]
    event = AuditEvent.objects.get(action="credential_keys.verify")
    assert event.metadata["ok_by_key"] == {"local:v1": 3, "local:v2": 4}


def test_verify_reports_every_failing_row_by_id_and_reason_and_exits_non_zero(personas):
    secrets_by_id = store_credentials(personas.org, 5)
    broken, missing = sorted(secrets_by_id)[:2]
    key_id, wrapped, ciphertext = envelopes()[broken]
    write_envelope(broken, (key_id, wrapped, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])))
    write_envelope(missing, ("local:v9", *envelopes()[missing][1:]))
    out = io.StringIO()

    with pytest.raises(CommandError, match=r"2 of 5 credential\(s\) failed to decrypt"):
        call_command("credential_keys", "verify", "--json", stdout=out)

    document = json.loads(out.getvalue())
    assert document["ok_by_key"] == {"local:v2": 3}
    assert sorted(document["failures"], key=lambda f: f["id"]) == sorted(
        [
            {
                "id": broken,
                "key_id": "local:v2",
                "reason": "ciphertext failed authentication under key local:v2",
            },
            {"id": missing, "key_id": "local:v9", "reason": "key local:v9 is not configured"},
        ],
        key=lambda f: f["id"],
    )
    for secret in secrets_by_id.values():
        assert secret not in out.getvalue()
    assert AuditEvent.objects.get(action="credential_keys.verify").outcome == "failure"


def test_verify_of_an_empty_database_is_refused(db):
    with pytest.raises(CommandError, match="the database holds no credentials"):
        run("verify")


def test_verify_can_be_limited_to_one_organisation(personas):
    store_credentials(personas.org, 2)
    store_credentials(personas.other_org, 3, prefix="other")
    assert run("verify", "--org", personas.other_org.slug).splitlines()[-1] == (
        "all 3 credential(s) decrypt"
    )


# --- retire ----------------------------------------------------------------------------------


def test_retire_refuses_a_key_still_in_use_and_changes_nothing(personas):
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        store_credentials(personas.org, 2)
    before = envelopes()
    with pytest.raises(CommandError, match=r"2 credential\(s\) still use local:v1: rotate"):
        run("retire", "local:v1")
    assert envelopes() == before
    refused = AuditEvent.objects.get(action="credential_keys.retire")
    assert (refused.outcome, refused.metadata["rows"]) == ("denied", 2)


def test_retire_refuses_the_active_key(personas):
    with pytest.raises(CommandError, match="local:v2 is the active key"):
        run("retire", "local:v2")


@pytest.mark.parametrize("key_id", ["local:v9", "aws-kms:alias/never", "v1", ""])
def test_retire_refuses_an_unknown_key_id(db, key_id):
    with pytest.raises(CommandError, match=f"unknown key id {re.escape(key_id)}"):
        run("retire", key_id)


def test_retire_of_an_unused_key_says_which_variable_to_remove_and_is_audited(personas):
    store_credentials(personas.org, 2)
    message = run("retire", "local:v1")
    assert message.startswith("no credential uses local:v1 (0 wraps in its lifetime); remove ")
    assert "AGENT_CREDENTIAL_KEY_V1 (or AGENT_CREDENTIAL_KEY_V1_FILE)" in message
    retired = AuditEvent.objects.get(action="credential_keys.retire")
    assert (retired.outcome, retired.target_id, retired.metadata["rows"]) == (
        "success",
        "local:v1",
        0,
    )


def test_every_subcommand_needs_a_valid_configuration(db):
    for args in (["verify"], ["retire", "local:v1"], ["rotate", "--to", "local:v1"]):
        with (
            override_settings(CREDENTIAL_KEYS={}),
            pytest.raises(CommandError, match="no credential key is configured"),
        ):
            run(*args)
