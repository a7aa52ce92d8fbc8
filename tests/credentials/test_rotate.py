"""`credential_keys rotate`: every data key moves to the target key in batches; plain rotation
changes only the wrap, --reencrypt the data key and payload too; rows replaced concurrently keep
their new secret; bad input changes nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.test import override_settings

from audit.models import AuditEvent
from credentials import crypto, rotation
from credentials.models import Credential, KeyUsage
from credentials.services import credential_replace_secret, encryption_context
from tests.conftest import TEST_KEYS
from tests.credentials.conftest import decrypt_all, envelopes, store_credentials
from tests.raw_storage import write_envelope

pytestmark = pytest.mark.django_db


def rotate(*args: str) -> tuple[list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("credential_keys", "rotate", *args, stdout=out, stderr=err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


@pytest.fixture
def under_v1(personas):
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        return store_credentials(personas.org, 30)


def _data_key(credential_id: str, envelope: tuple[str, bytes, bytes]) -> bytes:
    credential = Credential.objects.get(pk=credential_id)
    context = encryption_context(org_id=credential.org_id, credential_id=credential.id)
    with crypto.worker_role():
        provider = crypto.get_keyring().provider(envelope[0])
        return provider.unwrap(envelope[1], context.for_purpose("data-key"))


def test_rotation_rewraps_every_data_key_and_changes_nothing_else(under_v1):
    before = envelopes()
    assert {key for key, _, _ in before.values()} == {"local:v1"}

    lines, errors = rotate("--to", "local:v2", "--batch-size", "7")

    after = envelopes()
    assert after.keys() == before.keys()
    for credential_id, (key_id, wrapped, ciphertext) in after.items():
        assert key_id == "local:v2"
        assert wrapped != before[credential_id][1]
        assert ciphertext == before[credential_id][2]  # the payload is untouched
        assert _data_key(credential_id, after[credential_id]) == _data_key(
            credential_id, before[credential_id]
        )
    assert decrypt_all() == under_v1
    batches = [line for line in lines if line["event"] == "batch"]
    assert [b["rewrapped"] for b in batches] == [7, 7, 7, 7, 2]
    assert batches[-1]["done"] == batches[-1]["total"] == 30
    assert lines[-1] == {
        "event": "done",
        "to": "local:v2",
        "reencrypt": False,
        "rewrapped": 30,
        "changed_concurrently": 0,
        "failed": 0,
        "remaining": 0,
        "batches": 5,
        "rows_by_key": {"local:v2": 30},
    }
    assert errors == ""
    assert KeyUsage.objects.get(key_id="local:v2").wraps == 30


def test_rotation_is_audited_with_counts(under_v1):
    rotate("--to", "local:v2")
    start = AuditEvent.objects.get(action="credential_keys.rotate_start")
    assert start.metadata["rows_by_key"] == {"local:v1": 30}
    done = AuditEvent.objects.get(action="credential_keys.rotate")
    assert (done.outcome, done.target_id, done.actor_type) == ("success", "local:v2", "system")
    assert done.metadata["rewrapped"] == 30
    assert done.metadata["rows_before"] == {"local:v1": 30}
    assert done.metadata["rows_after"] == {"local:v2": 30}


def test_reencrypt_replaces_the_data_key_nonce_and_ciphertext(under_v1):
    before = envelopes()

    rotate("--to", "local:v2", "--reencrypt", "--batch-size", "8")

    after = envelopes()
    for credential_id, (key_id, _wrapped, ciphertext) in after.items():
        assert key_id == "local:v2"
        assert ciphertext != before[credential_id][2]
        assert ciphertext[:12] != before[credential_id][2][:12]  # a new nonce
        assert _data_key(credential_id, after[credential_id]) != _data_key(
            credential_id, before[credential_id]
        )
    assert decrypt_all() == under_v1


def test_running_again_finds_nothing_to_do_and_wraps_nothing_twice(under_v1):
    rotate("--to", "local:v2")
    moved = envelopes()
    out = io.StringIO()
    call_command("credential_keys", "rotate", "--to", "local:v2", stdout=out)
    assert out.getvalue().strip() == "nothing to do: all 30 credential(s) are under local:v2"
    assert envelopes() == moved
    assert KeyUsage.objects.get(key_id="local:v2").wraps == 30


def test_rotation_can_be_limited_to_one_organisation(personas, under_v1):
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        other = store_credentials(personas.other_org, 5, prefix="other")
    rotate("--to", "local:v2", "--org", personas.org.slug)
    stored = envelopes()
    assert {stored[i][0] for i in under_v1} == {"local:v2"}
    assert {stored[i][0] for i in other} == {"local:v1"}


def test_dry_run_counts_and_changes_nothing(under_v1):
    before = envelopes()
    out = io.StringIO()
    call_command("credential_keys", "rotate", "--to", "local:v2", "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        "dry run: 30 credential(s) would move to local:v2, in about 1 batch(es) of 1000",
        "  local:v1: 30",
        "  already under local:v2: 0",
    ]
    assert envelopes() == before
    assert not AuditEvent.objects.filter(action__startswith="credential_keys.").exists()


def _read_and_rewrap(credential_id):
    """One row as the rotation's own batch reader gives it (so its row key is the one this
    backend's write uses), and its data key re-wrapped under local:v2, as a batch would."""
    read = rotation._batch_reader(
        target_key_id="local:v2",
        org_id=None,
        batch_size=1000,
        skip_locked=False,
        reencrypt=False,
    )
    (row,) = [row for row in read(None) if row[2] == credential_id]
    _, row_key, _, org_text, key_id, format_version, wrapped, _ = row
    with crypto.worker_role():
        rewrapped = crypto.rewrap(
            crypto.SealedSecret(key_id, wrapped, b"", format_version),
            context=crypto.EncryptionContext(org_text, credential_id, format_version),
            to_key_id="local:v2",
        )
    return row_key, key_id, wrapped, rewrapped


def test_a_row_replaced_after_it_was_read_is_not_overwritten_with_stale_data(personas, under_v1):
    """The batch UPDATE is a compare-and-set on (key_id, wrapped key): here a secret is
    replaced between the rotation's read (its own batch reader, so the row key is the one this
    backend's write uses) and its write."""
    credential_id = sorted(under_v1)[0]
    credential = Credential.objects.get(pk=credential_id)
    with transaction.atomic():
        row_key, key_id, wrapped, rewrapped = _read_and_rewrap(credential_id)
        credential_replace_secret(credential=credential, acting_user=None, secret="the new secret")
        fresh = envelopes()[credential_id]

        written = rotation._compare_and_set(
            [(row_key, key_id, wrapped, rewrapped)], target_key_id="local:v2", reencrypt=False
        )

    assert written == 0
    assert envelopes()[credential_id] == fresh
    assert decrypt_all()[credential_id] == "the new secret"


def test_the_compare_and_set_writes_a_row_that_was_not_replaced(personas, under_v1):
    """The other half of the compare-and-set: the row the reader returned is the row written."""
    credential_id = sorted(under_v1)[0]
    with transaction.atomic():
        row_key, key_id, wrapped, rewrapped = _read_and_rewrap(credential_id)
        written = rotation._compare_and_set(
            [(row_key, key_id, wrapped, rewrapped)], target_key_id="local:v2", reencrypt=False
        )

    assert written == 1
    assert envelopes()[credential_id] == (
        "local:v2",
        rewrapped.wrapped_data_key,
        envelopes()[credential_id][2],
    )
    assert decrypt_all() == under_v1


def test_rows_that_cannot_be_unwrapped_are_reported_and_left_alone(under_v1, canary):
    broken_id = sorted(under_v1)[3]
    key_id, wrapped, ciphertext = envelopes()[broken_id]
    tampered = (key_id, wrapped[:-1] + bytes([wrapped[-1] ^ 1]), ciphertext)
    write_envelope(broken_id, tampered)
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError, match=r"1 credential\(s\) could not be unwrapped"):
        call_command("credential_keys", "rotate", "--to", "local:v2", stdout=out, stderr=err)

    stored = envelopes()
    assert stored[broken_id] == tampered
    assert {stored[i][0] for i in under_v1 if i != broken_id} == {"local:v2"}
    assert err.getvalue() == (
        f"credential {broken_id}: ciphertext failed authentication under key local:v1\n"
    )
    done = AuditEvent.objects.get(action="credential_keys.rotate")
    assert (done.outcome, done.metadata["failed_ids"]) == ("failure", [broken_id])


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [
        pytest.param(
            ["--to", "local:v9"],
            {},
            "key local:v9 is not configured: set AGENT_CREDENTIAL_KEY_V9",
            id="target-not-configured",
        ),
        pytest.param(
            ["--to", "aws-kms:alias/nowhere"],
            {},
            "key aws-kms:alias/nowhere is not configured: add it to AGENT_CREDENTIAL_KMS_KEYS",
            id="kms-target-not-configured",
        ),
        pytest.param(["--to", "latest"], {}, "key latest is not configured", id="unknown-key-id"),
        pytest.param(
            ["--to", "local:v1"],
            {},
            "local:v1 is not the active key (local:v2 is): set "
            "AGENT_CREDENTIAL_ACTIVE_KEY=local:v1",
            id="target-not-active",
        ),
        pytest.param(
            ["--to", "local:v2"],
            {"CREDENTIAL_KEYS": {**TEST_KEYS, "AGENT_CREDENTIAL_KEY_V3": "ab" * 31}},
            "AGENT_CREDENTIAL_KEY_V3 has 62 hex characters",
            id="malformed-key",
        ),
        pytest.param(
            ["--to", "local:v2", "--batch-size", "0"],
            {},
            "--batch-size must be between 1 and 10000",
            id="bad-batch-size",
        ),
        pytest.param(
            ["--to", "local:v2", "--org", "nope"],
            {},
            "no organisation with slug 'nope'",
            id="unknown-org",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(
    under_v1, args, settings, message
):
    before = envelopes()
    with override_settings(**settings), pytest.raises(CommandError) as failure:
        call_command("credential_keys", "rotate", *args, stdout=io.StringIO())
    assert message in str(failure.value)
    for value in settings.get("CREDENTIAL_KEYS", {}).values():
        assert value not in str(failure.value)
    assert envelopes() == before
    assert not AuditEvent.objects.filter(action__startswith="credential_keys.").exists()


def test_an_empty_database_is_refused_as_probably_the_wrong_one(db):
    with pytest.raises(CommandError, match="the database holds no credentials"):
        call_command("credential_keys", "rotate", "--to", "local:v2", stdout=io.StringIO())


def test_rotation_output_never_carries_a_secret(under_v1):
    lines, errors = rotate("--to", "local:v2", "--reencrypt")
    text = json.dumps(lines) + errors
    for secret in under_v1.values():
        assert secret not in text


def test_a_new_key_generated_and_configured_without_code_takes_over(under_v1):
    out = io.StringIO()
    call_command("credential_keys", "generate", stdout=out)
    name, _, value = out.getvalue().strip().partition("=")
    assert name == "AGENT_CREDENTIAL_KEY_V3"
    with override_settings(CREDENTIAL_KEYS={**TEST_KEYS, name: value}):
        rotate("--to", "local:v3")
        assert {key for key, _, _ in envelopes().values()} == {"local:v3"}
        assert decrypt_all() == under_v1


def test_rewrapped_envelopes_stay_bound_to_their_rows(under_v1):
    rotate("--to", "local:v2")
    first, second = sorted(under_v1)[:2]
    write_envelope(first, envelopes()[second])
    with pytest.raises(crypto.DecryptionError):
        decrypt_all()


def test_rotation_reports_each_batch_to_the_metrics(under_v1, client, settings):
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict:
        settings.METRICS_TOKEN = "m" * 40
        text = client.get("/api/metrics", HTTP_AUTHORIZATION=f"Bearer {'m' * 40}").content
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode())
            for s in f.samples
        }

    key = (("mode", "rewrap"), ("to_key_id", "local:v2"))
    before = samples()
    rotate("--to", "local:v2", "--batch-size", "7")
    after = samples()

    def delta(name: str) -> float:
        return after.get((name, key), 0.0) - before.get((name, key), 0.0)

    assert delta("everesthood_key_rotation_rows_total") == 30
    assert delta("everesthood_key_rotation_batches_total") == 5  # 7 + 7 + 7 + 7 + 2
    assert after[("everesthood_key_rotation_rows_remaining", (("to_key_id", "local:v2"),))] == 0
