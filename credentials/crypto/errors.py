"""The crypto package's exceptions. Messages never carry key material or ciphertext."""


class CryptoError(Exception):
    """Base class for every error raised by credentials.crypto."""


class KeyConfigurationError(CryptoError):
    """A configured key is malformed or missing; the message names the variable."""


class KeyNotConfiguredError(CryptoError):
    """A stored row names a key id that no provider offers (the key was removed or renamed)."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"key {key_id} is not configured")


class DecryptionError(CryptoError):
    """Authentication of a wrapped data key or payload failed.

    Deliberately one type with one message: which check failed (wrong key, altered bytes,
    ciphertext moved to another row or organisation) is not disclosed.
    """

    def __init__(self, key_id: str | None = None) -> None:
        self.key_id = key_id
        where = f" under key {key_id}" if key_id else ""
        super().__init__(f"ciphertext failed authentication{where}")


class KeyProviderError(CryptoError):
    """A key service could not wrap or unwrap: throttled, unreachable, access denied, key
    disabled or missing. Unlike DecryptionError nothing is wrong with the stored bytes, so
    the same call can succeed once the operator (or the service) has fixed the cause.

    ``kind`` is one of KINDS (stable, fit for a metric label); ``reason`` is the provider's
    own account (error code and message), which names resources but never key material.
    """

    THROTTLED = "throttled"
    UNREACHABLE = "unreachable"
    ACCESS_DENIED = "access_denied"
    KEY_UNUSABLE = "key_unusable"  # disabled, pending deletion, not found, wrong key type
    MISCONFIGURED = "misconfigured"  # no credentials or region where the client runs
    FAILED = "failed"  # any other answer from the service
    KINDS = (THROTTLED, UNREACHABLE, ACCESS_DENIED, KEY_UNUSABLE, MISCONFIGURED, FAILED)

    def __init__(self, key_id: str, kind: str, reason: str) -> None:
        self.key_id = key_id
        self.kind = kind
        self.reason = reason
        super().__init__(f"key {key_id}: {kind.replace('_', ' ')}: {reason}")


class DecryptionNotAllowedError(CryptoError):
    """Decryption was attempted outside a worker process."""

    def __init__(self) -> None:
        super().__init__("decryption is only allowed in a Celery worker process")
