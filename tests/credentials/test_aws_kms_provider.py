"""aws-kms: data keys wrapped by AWS KMS (moto's server mode on 127.0.0.1, reached by boto3
through AWS_KMS_ENDPOINT_URL), bound to our associated data as the encryption context."""

from __future__ import annotations

import uuid
from dataclasses import replace

import boto3
import pytest

from credentials import crypto
from credentials.crypto import EncryptionContext
from credentials.models import Credential, KeyUsage
from credentials.services import credential_create
from tests.credentials.conftest import aws_settings, key_settings


def _context() -> EncryptionContext:
    return EncryptionContext(org_id=str(uuid.uuid4()), credential_id=str(uuid.uuid4()))


@pytest.fixture
def aws_active(aws_key):
    with key_settings(kms_keys=[aws_key.key_id], active=aws_key.key_id, **aws_settings(aws_key)):
        yield aws_key


def test_a_secret_sealed_under_aws_kms_opens_in_a_worker(aws_active):
    context = _context()
    sealed = crypto.seal(b"kms-held secret", context=context)
    assert sealed.key_id == aws_active.key_id
    with crypto.worker_role():
        assert crypto.open_sealed(sealed, context=context) == b"kms-held secret"


def test_the_encryption_context_is_our_associated_data(aws_active):
    """The wrapped key is a real KMS ciphertext: KMS itself opens it with exactly our context
    and refuses it with another one."""
    context = _context()
    sealed = crypto.seal(b"secret", context=context)
    kms = boto3.client("kms", endpoint_url=aws_active.endpoint, region_name="eu-west-1")
    data_key_context = dict(context.for_purpose("data-key"))
    opened = kms.decrypt(CiphertextBlob=sealed.wrapped_data_key, EncryptionContext=data_key_context)
    assert opened["KeyId"] == aws_active.arn
    assert len(opened["Plaintext"]) == 32
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(
            CiphertextBlob=sealed.wrapped_data_key,
            EncryptionContext={**data_key_context, "credential": str(uuid.uuid4())},
        )


@pytest.mark.parametrize(
    "moved",
    [
        pytest.param(lambda c: replace(c, credential_id=str(uuid.uuid4())), id="other-row"),
        pytest.param(lambda c: replace(c, org_id=str(uuid.uuid4())), id="other-org"),
    ],
)
def test_a_wrong_encryption_context_fails_with_the_one_error(aws_active, moved):
    context = _context()
    sealed = crypto.seal(b"secret", context=context)
    with crypto.worker_role(), pytest.raises(crypto.DecryptionError) as failure:
        crypto.open_sealed(sealed, context=moved(context))
    assert str(failure.value) == f"ciphertext failed authentication under key {aws_active.key_id}"


def test_a_tampered_wrapped_key_fails_with_the_one_error(aws_active):
    context = _context()
    sealed = crypto.seal(b"secret", context=context)
    flipped = bytearray(sealed.wrapped_data_key)
    flipped[-5] ^= 0x01
    with crypto.worker_role(), pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(sealed._replace(wrapped_data_key=bytes(flipped)), context=context)


def test_a_key_wrapped_by_another_kms_key_is_refused(aws_active, moto_kms):
    """Decrypt names our KeyId: a ciphertext of another KMS key is not silently accepted.
    AWS answers IncorrectKeyException (a DecryptionError here); moto answers
    AccessDeniedException (a KeyProviderError): either way nothing is unwrapped."""
    kms = boto3.client("kms", endpoint_url=moto_kms, region_name="eu-west-1")
    other = kms.create_key()["KeyMetadata"]["Arn"]
    context = _context()
    sealed = crypto.seal(b"secret", context=context)
    foreign = kms.encrypt(
        KeyId=other, Plaintext=b"k" * 32, EncryptionContext=dict(context.for_purpose("data-key"))
    )["CiphertextBlob"]
    with (
        crypto.worker_role(),
        pytest.raises((crypto.DecryptionError, crypto.KeyProviderError)) as failure,
    ):
        crypto.open_sealed(sealed._replace(wrapped_data_key=foreign), context=context)
    assert aws_active.key_id in str(failure.value)


@pytest.mark.django_db
def test_credentials_stored_through_the_service_use_the_active_kms_key(aws_active, personas):
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name="via-kms", secret="s3cret-value"
    )
    assert Credential.objects.get(pk=credential.pk).key_id == aws_active.key_id
    assert KeyUsage.objects.get(key_id=aws_active.key_id).wraps == 1


def test_the_provider_repr_names_the_key_only(aws_active):
    provider = crypto.get_keyring().provider(aws_active.key_id)
    assert repr(provider) == f"AwsKmsKeyProvider(key_id={aws_active.key_id!r})"
