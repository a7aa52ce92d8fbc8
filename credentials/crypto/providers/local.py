"""The `local` provider: a KEK from an AGENT_CREDENTIAL_KEY_V<n> environment variable."""

from __future__ import annotations

from collections.abc import Mapping

from credentials.crypto.aead import Aead, canonical_aad
from credentials.crypto.errors import DecryptionError


class LocalKeyProvider:
    def __init__(self, key_id: str, key: bytes) -> None:
        self.key_id = key_id
        self._aead = Aead(key)

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes:
        return self._aead.seal(data_key, canonical_aad(context))

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        data_key = self._aead.open(wrapped, canonical_aad(context))
        if data_key is None:
            raise DecryptionError(self.key_id)
        return data_key

    def __repr__(self) -> str:  # never show key material, even in a debugger or traceback
        return f"LocalKeyProvider(key_id={self.key_id!r})"
