"""The `gcp-kms` provider: Cloud KMS encrypt/decrypt of each data key, with our associated
data (canonical JSON) as the additional authenticated data.

Key ids are `gcp-kms:projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`. Cloud KMS picks
the primary key version to encrypt and finds the version from the ciphertext to decrypt, so
its own key-version rotation is transparent here; moving to another CryptoKey is a rotation to
another key id.

The client uses the REST transport, in production as in the tests: it keeps no gRPC channel,
which is not safe to carry across the fork of Celery's prefork pool, and it is built on first
use in the process that uses it. Every request and response carries CRC32C checksums, checked
as Google's data-integrity guidance asks: a wrapped key corrupted on its way back would be
stored and could never be unwrapped again.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

from credentials.crypto.aead import canonical_aad
from credentials.crypto.errors import DecryptionError, KeyProviderError
from credentials.crypto.providers import KmsClientSettings


class GcpKmsKeyProvider:
    def __init__(self, key_id: str, crypto_key_name: str, settings: KmsClientSettings) -> None:
        self.key_id = key_id
        self.crypto_key_name = crypto_key_name
        self._settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes:
        aad = canonical_aad(context)
        response = self._call(
            "encrypt",
            {
                "name": self.crypto_key_name,
                "plaintext": data_key,
                "additional_authenticated_data": aad,
                "plaintext_crc32c": _crc32c(data_key),
                "additional_authenticated_data_crc32c": _crc32c(aad),
            },
        )
        if not (
            response.verified_plaintext_crc32c
            and response.verified_additional_authenticated_data_crc32c
        ):
            raise self._corrupted("the service did not verify the request's checksums")
        if response.ciphertext_crc32c != _crc32c(response.ciphertext):
            raise self._corrupted("the ciphertext's checksum does not match")
        return bytes(response.ciphertext)

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        aad = canonical_aad(context)
        response = self._call(
            "decrypt",
            {
                "name": self.crypto_key_name,
                "ciphertext": wrapped,
                "additional_authenticated_data": aad,
                "ciphertext_crc32c": _crc32c(wrapped),
                "additional_authenticated_data_crc32c": _crc32c(aad),
            },
        )
        if response.plaintext_crc32c != _crc32c(response.plaintext):
            raise self._corrupted("the plaintext's checksum does not match")
        return bytes(response.plaintext)

    def _corrupted(self, what: str) -> KeyProviderError:
        return KeyProviderError(
            self.key_id, KeyProviderError.FAILED, f"corrupted in transit: {what}"
        )

    def _call(self, operation: str, request: dict[str, Any]) -> Any:
        import requests
        from google.api_core import exceptions as api_errors
        from google.auth import exceptions as auth_errors

        try:
            return getattr(self._kms(), operation)(
                request=request, retry=self._retry(), timeout=self._settings.timeout_seconds
            )
        except api_errors.BadRequest as exc:
            # Over REST every 400 is a BadRequest; the Google status tells them apart.
            status = _google_status(exc)
            if status == "FAILED_PRECONDITION":  # the key version is disabled or destroyed
                raise self._error(KeyProviderError.KEY_UNUSABLE, operation, exc) from None
            if operation == "decrypt" and status == "INVALID_ARGUMENT":
                # Cloud KMS answers 400 when the ciphertext or the AAD does not authenticate.
                raise DecryptionError(self.key_id) from None
            raise self._error(KeyProviderError.FAILED, operation, exc) from None
        except api_errors.TooManyRequests as exc:
            raise self._error(KeyProviderError.THROTTLED, operation, exc) from None
        except (api_errors.Unauthorized, api_errors.Forbidden) as exc:
            raise self._error(KeyProviderError.ACCESS_DENIED, operation, exc) from None
        except (api_errors.NotFound, api_errors.FailedPrecondition) as exc:
            raise self._error(KeyProviderError.KEY_UNUSABLE, operation, exc) from None
        except (api_errors.ServiceUnavailable, api_errors.GatewayTimeout) as exc:
            raise self._error(KeyProviderError.UNREACHABLE, operation, exc) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise self._error(KeyProviderError.UNREACHABLE, operation, exc) from None
        except auth_errors.GoogleAuthError as exc:
            raise self._error(KeyProviderError.MISCONFIGURED, operation, exc) from None
        except api_errors.GoogleAPIError as exc:
            raise self._error(KeyProviderError.FAILED, operation, exc) from None

    def _error(self, kind: str, operation: str, exc: Exception) -> KeyProviderError:
        # Exception texts here are the service's status and message, or a connection error
        # naming the endpoint; requests' errors never include the request body.
        return KeyProviderError(self.key_id, kind, f"{operation}: {str(exc)[:300]}")

    def _retry(self) -> Any:
        """The library's backoff, bounded by attempts: a fresh count for every call."""
        import requests
        from google.api_core import exceptions as api_errors
        from google.api_core.retry import Retry

        transient = (
            api_errors.TooManyRequests,
            api_errors.ServiceUnavailable,
            api_errors.GatewayTimeout,
            api_errors.InternalServerError,
            requests.ConnectionError,
            requests.Timeout,
        )
        attempt = itertools.count(2)
        max_attempts = self._settings.max_attempts

        def should_retry(exc: Exception) -> bool:
            return isinstance(exc, transient) and next(attempt) <= max_attempts

        return Retry(predicate=should_retry, initial=0.2, maximum=2.0, multiplier=2.0, timeout=None)

    def _kms(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import kms_v1

        settings = self._settings
        return kms_v1.KeyManagementServiceClient(
            transport="rest",
            # None: Application Default Credentials (workload identity, a service account).
            credentials=AnonymousCredentials() if settings.gcp_anonymous_credentials else None,
            client_options=ClientOptions(api_endpoint=settings.gcp_endpoint_url)
            if settings.gcp_endpoint_url
            else None,
        )

    def __repr__(self) -> str:
        return f"GcpKmsKeyProvider(key_id={self.key_id!r})"


def _google_status(exc: Exception) -> str:
    """The `error.status` of a REST error answer (INVALID_ARGUMENT, FAILED_PRECONDITION...)."""
    response = getattr(exc, "response", None)
    try:
        return str(response.json()["error"]["status"]) if response is not None else ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))
