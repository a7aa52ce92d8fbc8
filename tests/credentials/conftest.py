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
