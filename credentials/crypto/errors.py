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


class DecryptionNotAllowedError(CryptoError):
    """Decryption was attempted outside a worker process."""

    def __init__(self) -> None:
        super().__init__("decryption is only allowed in a Celery worker process")
