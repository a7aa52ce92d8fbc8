"""Secrets replaced while a rotation runs in another process keep their new value."""

from __future__ import annotations

import json
import random

import pytest
from django.test import override_settings

from credentials.models import Credential
from credentials.services import credential_replace_secret
from tests.credentials.conftest import decrypt_all, envelopes, store_credentials
from tests.credentials.test_rotate_interrupted import ROWS, read_batches, start_rotation

pytestmark = pytest.mark.django_db(transaction=True)


def test_secrets_replaced_during_a_rotation_keep_their_new_value(personas):
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        expected = store_credentials(personas.org, ROWS)
    chosen = random.Random(7).sample(sorted(expected), 40)

    rotation = start_rotation()
    read_batches(rotation, 1)
    # The rotation is mid-way: with a one-page pipe it blocks a few batches ahead of the lines
    # read, so it is still running (and resumes) while these writes go in.
    for n, credential_id in enumerate(chosen):
        credential = Credential.objects.get(pk=credential_id)
        new_secret = f"replaced-during-rotation-{n}"
        credential_replace_secret(credential=credential, acting_user=None, secret=new_secret)
        expected[credential_id] = new_secret
        assert rotation.poll() is None, "the rotation finished before the writes: no overlap"
    out, err = rotation.communicate(timeout=120)

    assert rotation.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["remaining"] == 0
    assert {key for key, _, _ in envelopes().values()} == {"local:v2"}
    assert decrypt_all() == expected
