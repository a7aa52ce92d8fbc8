"""gcp-kms: data keys wrapped by Cloud KMS through the real google-cloud-kms client (REST
transport, endpoint overridden, anonymous credentials) against a local server that implements
encrypt/decrypt with AES-256-GCM and authenticates our associated data."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace

import pytest

from credentials import crypto
from credentials.crypto import EncryptionContext
from credentials.crypto.aead import canonical_aad
from tests.credentials.conftest import gcp_settings, key_settings


def _context() -> EncryptionContext:
    return EncryptionContext(org_id=str(uuid.uuid4()), credential_id=str(uuid.uuid4()))


@pytest.fixture
def gcp_active(gcp_key):
    with key_settings(
        kms_keys=[gcp_key.key_id], active=gcp_key.key_id, **gcp_settings(gcp_key.server.url)
    ):
        yield gcp_key


def test_a_secret_sealed_under_gcp_kms_opens_in_a_worker(gcp_active):
    context = _context()
    sealed = crypto.seal(b"cloud kms secret", context=context)
    assert sealed.key_id == gcp_active.key_id
    with crypto.worker_role():
        assert crypto.open_sealed(sealed, context=context) == b"cloud kms secret"


def test_the_client_sends_our_associated_data_and_checksums_to_the_rest_api(gcp_active):
    context = _context()
    crypto.seal(b"secret", context=context)
    [request] = gcp_active.server.requests
    assert request["path"].split("?")[0] == f"/v1/{gcp_active.name}:encrypt"
    body = json.loads(request["body"])
    aad = canonical_aad(dict(context.for_purpose("data-key")))
    assert base64.b64decode(body["additionalAuthenticatedData"]) == aad
    assert {"plaintextCrc32c", "additionalAuthenticatedDataCrc32c"} <= set(body)
    assert "authorization" not in {name.lower() for name in request["headers"]}


@pytest.mark.parametrize(
    "moved",
    [
        pytest.param(lambda c: replace(c, credential_id=str(uuid.uuid4())), id="other-row"),
        pytest.param(lambda c: replace(c, org_id=str(uuid.uuid4())), id="other-org"),
    ],
)
def test_wrong_associated_data_fails_with_the_one_error(gcp_active, moved):
    context = _context()
    sealed = crypto.seal(b"secret", context=context)
    with crypto.worker_role(), pytest.raises(crypto.DecryptionError) as failure:
        crypto.open_sealed(sealed, context=moved(context))
    assert str(failure.value) == f"ciphertext failed authentication under key {gcp_active.key_id}"


def test_a_tampered_wrapped_key_fails_with_the_one_error(gcp_active):
    context = _context()
    sealed = crypto.seal(b"secret", context=context)
    flipped = bytearray(sealed.wrapped_data_key)
    flipped[-1] ^= 0x80
    with crypto.worker_role(), pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(sealed._replace(wrapped_data_key=bytes(flipped)), context=context)


def test_a_response_corrupted_in_transit_is_refused_not_stored(gcp_active, monkeypatch):
    """A wrapped key whose checksum does not match is never returned: stored, it could never
    be unwrapped again."""
    server = gcp_active.server
    original = server.answer

    def corrupting(path, headers, body):
        status, response_headers, payload = original(path, headers, body)
        document = json.loads(payload)
        raw = bytearray(base64.b64decode(document["ciphertext"]))
        raw[-1] ^= 0x01
        document["ciphertext"] = base64.b64encode(bytes(raw)).decode()
        return status, response_headers, json.dumps(document).encode()

    monkeypatch.setattr(server, "answer", corrupting)
    with pytest.raises(crypto.KeyProviderError, match="corrupted in transit"):
        crypto.seal(b"secret", context=_context())
