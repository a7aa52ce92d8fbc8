"""Envelope encryption of one credential secret.

A fresh 256-bit data key (DEK) per seal encrypts the secret with AES-256-GCM; the active KEK
wraps the DEK. Both layers are bound to the same encryption context (organisation, credential,
format version) plus a purpose label, so a ciphertext or wrapped key copied to another row or
organisation fails to authenticate, and a wrapped DEK can never be opened as a payload.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from credentials.crypto import aead
from credentials.crypto.errors import DecryptionError
from credentials.crypto.keyring import Keyring, get_keyring
from credentials.crypto.process_role import require_decryption_allowed

FORMAT_VERSION = 1
SUPPORTED_FORMATS = frozenset({FORMAT_VERSION})


@dataclass(frozen=True)
class EncryptionContext:
    org_id: str
    credential_id: str
    format_version: int = FORMAT_VERSION

    def for_purpose(self, purpose: str) -> dict[str, str]:
        return {
            "app": "everesthood.credential",
            "purpose": purpose,
            "org": self.org_id,
            "credential": self.credential_id,
            "format": str(self.format_version),
        }


@dataclass(frozen=True)
class SealedSecret:
    key_id: str
    wrapped_data_key: bytes
    ciphertext: bytes  # nonce || ciphertext || tag
    format_version: int = FORMAT_VERSION

    def __repr__(self) -> str:
        return (
            f"SealedSecret(key_id={self.key_id!r}, format_version={self.format_version}, "
            f"ciphertext=<{len(self.ciphertext)} bytes>)"
        )


def seal(
    plaintext: bytes,
    *,
    context: EncryptionContext,
    keyring: Keyring | None = None,
    rng: aead.RandomBytes = os.urandom,
) -> SealedSecret:
    """Encrypt a secret under a new data key wrapped by the active KEK."""
    if context.format_version != FORMAT_VERSION:
        raise ValueError(f"new secrets are sealed in format {FORMAT_VERSION} only")
    ring = keyring or get_keyring()
    provider = ring.active
    data_key = aead.generate_key(rng)
    ciphertext = aead.Aead(data_key).seal(
        plaintext, aead.canonical_aad(context.for_purpose("payload")), rng=rng
    )
    wrapped = provider.wrap(data_key, context.for_purpose("data-key"))
    return SealedSecret(
        key_id=provider.key_id,
        wrapped_data_key=wrapped,
        ciphertext=ciphertext,
        format_version=context.format_version,
    )


def open_sealed(
    sealed: SealedSecret, *, context: EncryptionContext, keyring: Keyring | None = None
) -> bytes:
    """Decrypt a secret. Worker processes only.

    Raises DecryptionNotAllowedError outside a worker, KeyNotConfiguredError when the row's key
    is gone, and DecryptionError for every authentication failure.
    """
    require_decryption_allowed()
    if sealed.format_version not in SUPPORTED_FORMATS or (
        sealed.format_version != context.format_version
    ):
        raise DecryptionError(sealed.key_id)
    ring = keyring or get_keyring()
    provider = ring.provider(sealed.key_id)
    data_key = provider.unwrap(sealed.wrapped_data_key, context.for_purpose("data-key"))
    if len(data_key) != aead.KEY_BYTES:
        raise DecryptionError(sealed.key_id)
    plaintext = aead.Aead(data_key).open(
        sealed.ciphertext, aead.canonical_aad(context.for_purpose("payload"))
    )
    if plaintext is None:
        raise DecryptionError(sealed.key_id)
    return plaintext
