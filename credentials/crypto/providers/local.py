"""The `local` provider: a KEK from an AGENT_CREDENTIAL_KEY_V<n> environment variable."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from credentials.crypto.aead import (
    KEY_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    AssociatedData,
    canonical_aad,
)
from credentials.crypto.errors import DecryptionError


class LocalKeyProvider:
    """AES-256-GCM wrap (nonce || ciphertext || tag, random 96-bit nonce) under one KEK.

    The KEK's cipher object is built once: building it costs more than wrapping one data key.
    """

    def __init__(self, key_id: str, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self.key_id = key_id
        self._aesgcm = AESGCM(key)

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes:
        aad = context.encoded if type(context) is AssociatedData else canonical_aad(context)
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aesgcm.encrypt(nonce, data_key, aad)

    def wrap_with_nonce(self, data_key: bytes, nonce: bytes, aad: bytes) -> bytes:
        """wrap() with a nonce the caller drew for this one call (the envelope draws the data
        key, its payload nonce and this nonce in one os.urandom call) and the associated
        data's canonical bytes. A nonce must never be passed twice."""
        return nonce + self._aesgcm.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        if len(wrapped) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError(self.key_id)
        aad = context.encoded if type(context) is AssociatedData else canonical_aad(context)
        try:
            return self._aesgcm.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(self.key_id) from None

    def __repr__(self) -> str:  # never show key material, even in a debugger or traceback
        return f"LocalKeyProvider(key_id={self.key_id!r})"
