"""The only package that touches `cryptography`. Public surface: what is imported here."""

from credentials.crypto.aead import generate_key
from credentials.crypto.envelope import (
    FORMAT_VERSION,
    EncryptionContext,
    SealedSecret,
    open_sealed,
    reseal,
    rewrap,
    seal,
)
from credentials.crypto.errors import (
    CryptoError,
    DecryptionError,
    DecryptionNotAllowedError,
    KeyConfigurationError,
    KeyNotConfiguredError,
    KeyProviderError,
)
from credentials.crypto.keyring import (
    ACTIVE_KEY_VARIABLE,
    KEYRING_SETTINGS,
    KMS_KEYS_VARIABLE,
    LOCAL_KEY_PREFIX,
    MAX_KEY_ID_LENGTH,
    Keyring,
    get_keyring,
    key_variable,
    keyring_from_django_settings,
    local_key_variable,
    normalise_key_id,
    reset_keyring,
)
from credentials.crypto.process_role import decryption_enabled, enable_decryption, worker_role
from credentials.crypto.providers import LOCAL, PROVIDERS, provider_name

__all__ = [
    "ACTIVE_KEY_VARIABLE",
    "FORMAT_VERSION",
    "KEYRING_SETTINGS",
    "KMS_KEYS_VARIABLE",
    "LOCAL",
    "LOCAL_KEY_PREFIX",
    "MAX_KEY_ID_LENGTH",
    "PROVIDERS",
    "CryptoError",
    "DecryptionError",
    "DecryptionNotAllowedError",
    "EncryptionContext",
    "KeyConfigurationError",
    "KeyNotConfiguredError",
    "KeyProviderError",
    "Keyring",
    "SealedSecret",
    "decryption_enabled",
    "enable_decryption",
    "generate_key",
    "get_keyring",
    "key_variable",
    "keyring_from_django_settings",
    "local_key_variable",
    "normalise_key_id",
    "open_sealed",
    "provider_name",
    "reseal",
    "reset_keyring",
    "rewrap",
    "seal",
    "worker_role",
]
