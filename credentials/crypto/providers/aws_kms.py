"""The `aws-kms` provider: AWS KMS Encrypt/Decrypt of each data key, with our associated data
as the KMS encryption context (so CloudTrail shows org and credential of every call, and a
wrapped key only decrypts with the same context).

Key ids are `aws-kms:<KeyId>` where KeyId is what KMS accepts: a key id, key ARN, alias name
(`alias/vault`) or alias ARN. The same KeyId is passed to Decrypt, so a ciphertext produced
under another KMS key is refused (IncorrectKeyException) rather than silently accepted. KMS's
own automatic rotation of the key material behind one KeyId is transparent here; moving to
another KMS key is a rotation to another key id (`credential_keys rotate`).

boto3 is imported and the client built on first use, in the process that uses it: Celery's
prefork pool forks after start-up, and a client created before the fork would be shared.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from credentials.crypto.errors import DecryptionError, KeyProviderError
from credentials.crypto.providers import KmsClientSettings

_ARN_REGION_RE = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):")

# Error codes KMS answers with (https://docs.aws.amazon.com/kms/latest/APIReference/):
# authentication failures of the ciphertext or its context are DecryptionError, like a local
# key's; everything else means the key service cannot be used now.
_AUTHENTICATION_FAILED = {"InvalidCiphertextException", "IncorrectKeyException"}
_KINDS = {
    "ThrottlingException": KeyProviderError.THROTTLED,
    "LimitExceededException": KeyProviderError.THROTTLED,
    "RequestLimitExceeded": KeyProviderError.THROTTLED,
    "AccessDeniedException": KeyProviderError.ACCESS_DENIED,
    "UnrecognizedClientException": KeyProviderError.ACCESS_DENIED,
    "InvalidSignatureException": KeyProviderError.ACCESS_DENIED,
    "ExpiredTokenException": KeyProviderError.ACCESS_DENIED,
    "DisabledException": KeyProviderError.KEY_UNUSABLE,
    "KMSInvalidStateException": KeyProviderError.KEY_UNUSABLE,
    "NotFoundException": KeyProviderError.KEY_UNUSABLE,
    "InvalidKeyUsageException": KeyProviderError.KEY_UNUSABLE,
    "KeyUnavailableException": KeyProviderError.UNREACHABLE,
    "DependencyTimeoutException": KeyProviderError.UNREACHABLE,
}


def region_of(kms_key_id: str) -> str | None:
    match = _ARN_REGION_RE.match(kms_key_id)
    return match.group(1) if match else None


class AwsKmsKeyProvider:
    def __init__(self, key_id: str, kms_key_id: str, settings: KmsClientSettings) -> None:
        self.key_id = key_id
        self.kms_key_id = kms_key_id
        self._settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes:
        response = self._call(
            "encrypt",
            KeyId=self.kms_key_id,
            Plaintext=data_key,
            EncryptionContext=dict(context),
        )
        return bytes(response["CiphertextBlob"])

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        response = self._call(
            "decrypt",
            KeyId=self.kms_key_id,
            CiphertextBlob=wrapped,
            EncryptionContext=dict(context),
        )
        return bytes(response["Plaintext"])

    def _call(self, operation: str, **params: Any) -> Any:
        from botocore import exceptions as boto_errors

        try:
            return getattr(self._kms(), operation)(**params)
        except boto_errors.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "unknown"))
            if code in _AUTHENTICATION_FAILED:
                raise DecryptionError(self.key_id) from None
            retries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
            message = str(error.get("Message", ""))[:300]
            reason = f"{operation} answered {code}: {message}" + (
                f" (after {retries} retries)" if retries else ""
            )
            kind = _KINDS.get(code, KeyProviderError.FAILED)
            raise KeyProviderError(self.key_id, kind, reason) from None
        except (
            boto_errors.EndpointConnectionError,
            boto_errors.ConnectTimeoutError,
            boto_errors.ReadTimeoutError,
            boto_errors.ConnectionClosedError,
        ) as exc:
            # These messages name the endpoint URL only.
            raise KeyProviderError(self.key_id, KeyProviderError.UNREACHABLE, str(exc)) from None
        except (
            boto_errors.NoCredentialsError,
            boto_errors.PartialCredentialsError,
            boto_errors.NoRegionError,
        ) as exc:
            raise KeyProviderError(self.key_id, KeyProviderError.MISCONFIGURED, str(exc)) from None
        except boto_errors.BotoCoreError as exc:
            # Other botocore errors (parameter validation among them) may quote request
            # parameters, which include the data key: only the type is kept.
            raise KeyProviderError(
                self.key_id, KeyProviderError.FAILED, f"{operation} failed: {type(exc).__name__}"
            ) from None

    def _kms(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> Any:
        import boto3
        from botocore.config import Config

        settings = self._settings
        config = Config(
            connect_timeout=settings.timeout_seconds,
            read_timeout=settings.timeout_seconds,
            # "standard" retries throttling and transient errors with jittered exponential
            # backoff; total_max_attempts counts the first attempt (botocore's max_attempts
            # would not).
            retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        )
        session = boto3.session.Session()
        return session.client(
            "kms",
            region_name=region_of(self.kms_key_id) or settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            config=config,
        )

    def __repr__(self) -> str:
        return f"AwsKmsKeyProvider(key_id={self.key_id!r})"
