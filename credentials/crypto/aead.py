"""AES-256-GCM with a random 96-bit nonce, stored as nonce || ciphertext || tag."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32

RandomBytes = Callable[[int], bytes]


def canonical_aad(context: Mapping[str, str]) -> bytes:
    """One byte string per mapping, independent of insertion order."""
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode("utf-8")


class Aead:
    """An AES-256-GCM key; build once per key (building costs more than a small encrypt)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aesgcm = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes, *, rng: RandomBytes = os.urandom) -> bytes:
        nonce = rng(NONCE_BYTES)
        return nonce + self._aesgcm.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or None if authentication failed (callers raise their own error)."""
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            return None
        try:
            return self._aesgcm.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            return None


def generate_key(rng: RandomBytes = os.urandom) -> bytes:
    return rng(KEY_BYTES)
