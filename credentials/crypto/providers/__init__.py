"""Key-encryption-key providers: each wraps and unwraps data keys under one KEK."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

LOCAL = "local"
AWS_KMS = "aws-kms"
GCP_KMS = "gcp-kms"
PROVIDERS = (LOCAL, AWS_KMS, GCP_KMS)


class KeyProvider(Protocol):
    """The one interface every KEK provider implements (local, aws-kms, gcp-kms).

    ``context`` is the encryption context (KMS terms) / associated data (AEAD terms): the
    wrapped key only unwraps with exactly the same mapping. Failures raise DecryptionError
    (the bytes or the context are wrong) or KeyProviderError (the key service cannot be used
    now); nothing else escapes, and neither carries key material.
    """

    key_id: str

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes: ...


@dataclass(frozen=True)
class KmsClientSettings:
    """How the KMS clients reach their service; from settings (AWS_KMS_*, GCP_KMS_*,
    CREDENTIAL_KMS_*). Endpoints are overridable for VPC endpoints, emulators and tests.

    ``timeout_seconds`` bounds each attempt (connect and read); ``max_attempts`` bounds the
    attempts per call, first one included: a run that cannot reach its key fails after at most
    that many tries with backoff, instead of retrying for a minute (google-cloud-kms' default)
    or piling up calls against a throttled service.
    """

    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    gcp_endpoint_url: str | None = None
    gcp_anonymous_credentials: bool = False
    timeout_seconds: float = 5.0
    max_attempts: int = 3


def provider_name(key_id: str) -> str:
    """`local:v2` -> `local`, `aws-kms:alias/vault` -> `aws-kms`."""
    return key_id.split(":", 1)[0]
