"""The only package that touches `cryptography`. Public surface: what is imported here."""

from credentials.crypto.aead import generate_key
from credentials.crypto.envelope import (
    FORMAT_VERSION,
    EncryptionContext,
    SealedSecret,
    open_sealed,
    seal,
)
from credentials.crypto.errors import (
    CryptoError,
    DecryptionError,
    DecryptionNotAllowedError,
    KeyConfigurationError,
    KeyNotConfiguredError,
)
from credentials.crypto.keyring import Keyring, get_keyring, local_key_variable, reset_keyring
from credentials.crypto.process_role import decryption_enabled, enable_decryption, worker_role

__all__ = [
    "FORMAT_VERSION",
    "CryptoError",
    "DecryptionError",
    "DecryptionNotAllowedError",
    "EncryptionContext",
    "KeyConfigurationError",
    "KeyNotConfiguredError",
    "Keyring",
    "SealedSecret",
    "decryption_enabled",
    "enable_decryption",
    "generate_key",
    "get_keyring",
    "local_key_variable",
    "open_sealed",
    "reset_keyring",
    "seal",
    "worker_role",
]
