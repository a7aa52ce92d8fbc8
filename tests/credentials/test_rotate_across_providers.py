"""Credentials move local:v1 -> aws-kms (moto server) -> local:v1 without a code change, and
every credential decrypts on the worker path before, during and after each move."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from guardian.shortcuts import assign_perm

from audit.services import SYSTEM
from config import redaction
from credentials import crypto
from credentials.models import Credential, KeyUsage
from credentials.services import credential_keys_rotate, credentials_decrypt_for_job
from tests.credentials.conftest import aws_settings, envelopes, key_settings, store_credentials

pytestmark = pytest.mark.django_db


def decrypt_on_worker_path(org, ids):
    """What a worker does for a run: authorise (use grants of the agent's group) and decrypt."""
    principal, created = Group.objects.get_or_create(name="agent:rotation-test")
    if created:
        for credential in Credential.objects.filter(org=org):
            assign_perm("credentials.use_credential", principal, credential)
    with crypto.worker_role(), redaction.secret_scope():
        opened = credentials_decrypt_for_job(
            org_id=org.id,
            credential_ids=[uuid.UUID(i) for i in ids],
            principal=principal,
            actor=SYSTEM,
        )
    return {str(k): v for k, v in opened.items()}


def test_credentials_move_to_aws_kms_and_back_decrypting_throughout(personas, aws_key):
    org = personas.org
    both = {"kms_keys": [aws_key.key_id], **aws_settings(aws_key)}
    with key_settings(active="local:v1", **both):
        expected = store_credentials(org, 25)
        assert decrypt_on_worker_path(org, expected) == expected

    during: list[dict[str, str]] = []
    with key_settings(active=aws_key.key_id, **both):
        result = credential_keys_rotate(
            to_key_id=aws_key.key_id,
            batch_size=10,
            on_batch=lambda _: during.append(decrypt_on_worker_path(org, expected)),
        )
        assert result.complete
        assert result.rewrapped == 25
        assert {key for key, _, _ in envelopes().values()} == {aws_key.key_id}
        assert decrypt_on_worker_path(org, expected) == expected
        assert KeyUsage.objects.get(key_id=aws_key.key_id).wraps == 25

    with key_settings(active="local:v1", **both):
        out = io.StringIO()
        call_command(
            "credential_keys", "rotate", "--to", "local:v1", "--batch-size", "10", stdout=out
        )
        assert json.loads(out.getvalue().splitlines()[-1])["rows_by_key"] == {"local:v1": 25}
        assert decrypt_on_worker_path(org, expected) == expected
        out = io.StringIO()
        call_command("credential_keys", "retire", aws_key.key_id, stdout=out)
        assert f"remove {aws_key.key_id} from AGENT_CREDENTIAL_KMS_KEYS" in out.getvalue()

    assert during == [expected] * 3  # after every batch, every credential opened
