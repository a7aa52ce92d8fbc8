"""Key services for the key-lifecycle tests: moto's server mode for AWS KMS, a local Cloud KMS
REST server for GCP, and helpers that configure the keyring through settings only."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.test.utils import override_settings

from tests.conftest import TEST_KEYS
from tests.credentials.kms_fakes import AWS_TEST_ENV, FakeGcpKms, moto_server


@pytest.fixture(scope="session")
def aws_test_env() -> Iterator[dict[str, str]]:
    saved = {name: os.environ.get(name) for name in AWS_TEST_ENV}
    os.environ.update(AWS_TEST_ENV)
    try:
        yield dict(AWS_TEST_ENV)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def moto_kms(aws_test_env: dict[str, str]) -> Iterator[str]:
    """moto in server mode on 127.0.0.1, one process for the session; yields its URL."""
    with moto_server() as url:
        yield url


@dataclass(frozen=True)
class AwsKey:
    key_id: str  # ours: aws-kms:alias/...
    arn: str
    endpoint: str


@pytest.fixture
def aws_key(moto_kms: str) -> AwsKey:
    """A fresh symmetric KMS key with an alias, made through the KMS API."""
    import boto3

    client = boto3.client("kms", endpoint_url=moto_kms, region_name="eu-west-1")
    arn = client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"][
        "Arn"
    ]
    alias = f"alias/vault-{uuid.uuid4().hex[:8]}"
    client.create_alias(AliasName=alias, TargetKeyId=arn)
    return AwsKey(key_id=f"aws-kms:{alias}", arn=arn, endpoint=moto_kms)


@dataclass(frozen=True)
class GcpKey:
    key_id: str  # ours: gcp-kms:projects/...
    name: str
    server: FakeGcpKms


@pytest.fixture
def gcp_key() -> Iterator[GcpKey]:
    with FakeGcpKms() as server:
        name = server.add_key(
            f"projects/vault-test/locations/global/keyRings/ring/cryptoKeys/k{uuid.uuid4().hex[:6]}"
        )
        yield GcpKey(key_id=f"gcp-kms:{name}", name=name, server=server)


@contextmanager
def key_settings(
    *,
    kms_keys: list[str] = (),  # type: ignore[assignment]
    active: str | None = None,
    local: dict[str, str] | None = None,
    **extra: Any,
) -> Iterator[None]:
    """Configure the keyring exactly as the environment would, through settings."""
    with override_settings(
        CREDENTIAL_KEYS=dict(TEST_KEYS if local is None else local),
        AGENT_CREDENTIAL_KMS_KEYS=",".join(kms_keys),
        AGENT_CREDENTIAL_ACTIVE_KEY=active,
        **extra,
    ):
        yield


def aws_settings(key: AwsKey, **extra: Any) -> dict[str, Any]:
    return {"AWS_KMS_ENDPOINT_URL": key.endpoint, "AWS_KMS_REGION": "eu-west-1", **extra}


def gcp_settings(url: str, **extra: Any) -> dict[str, Any]:
    return {"GCP_KMS_ENDPOINT_URL": url, "GCP_KMS_ANONYMOUS_CREDENTIALS": True, **extra}


# --- many credentials, and the rotation command as a separate process ---------------------


def store_credentials(org: Any, count: int, *, prefix: str = "cred") -> dict[str, str]:
    """``count`` credentials of ``org`` sealed under the active key, in one bulk insert (the
    service's per-row audit events would dominate); returns {id: secret}."""
    from django.utils import timezone

    from credentials import crypto
    from credentials.models import Credential, KeyUsage
    from credentials.services import encryption_context

    secrets_by_id: dict[str, str] = {}
    rows = []
    now = timezone.now()
    for n in range(count):
        credential_id = uuid.uuid4()
        secret = f"{prefix}-secret-{n}-{uuid.uuid4().hex}"
        sealed = crypto.seal(
            secret.encode(), context=encryption_context(org_id=org.id, credential_id=credential_id)
        )
        rows.append(
            Credential(
                id=credential_id,
                org=org,
                name=f"{prefix}-{n}",
                key_id=sealed.key_id,
                format_version=sealed.format_version,
                wrapped_data_key=sealed.wrapped_data_key,
                ciphertext=sealed.ciphertext,
                secret_updated_at=now,
            )
        )
        secrets_by_id[str(credential_id)] = secret
    Credential.objects.bulk_create(rows, batch_size=500)
    if rows:
        KeyUsage.objects.add_wraps(key_id=rows[0].key_id, count=len(rows))
    return secrets_by_id


def envelopes() -> dict[str, tuple[str, bytes, bytes]]:
    """Every stored envelope by credential id, as raw bytes."""
    from credentials.models import Credential

    return {
        str(pk): (key_id, bytes(wrapped), bytes(ciphertext))
        for pk, key_id, wrapped, ciphertext in Credential.objects.values_list(
            "id", "key_id", "wrapped_data_key", "ciphertext"
        )
    }


def decrypt_all() -> dict[str, str]:
    """Every credential decrypted as a worker would (worker role), by id."""
    from credentials import crypto
    from credentials.models import Credential
    from credentials.services import encryption_context

    opened = {}
    with crypto.worker_role():
        for credential in Credential.objects.all():
            sealed = crypto.SealedSecret(
                key_id=credential.key_id,
                wrapped_data_key=bytes(credential.wrapped_data_key),
                ciphertext=bytes(credential.ciphertext),
                format_version=credential.format_version,
            )
            context = encryption_context(
                org_id=credential.org_id,
                credential_id=credential.id,
                format_version=credential.format_version,
            )
            opened[str(credential.id)] = crypto.open_sealed(sealed, context=context).decode()
    return opened


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a manage.py process on this test database with the session's keys."""
    from django.db import connection

    from agents.worker_process import database_url

    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_CREDENTIAL_")}
    env.update(TEST_KEYS)
    env.update(
        {
            "EVERESTHOOD_ENV_FILE": "",
            "DATABASE_URL": database_url(connection.settings_dict),
            "LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env
