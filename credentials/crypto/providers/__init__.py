"""Key-encryption-key providers: each wraps and unwraps data keys under one KEK."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class KeyProvider(Protocol):
    """The one interface every KEK provider implements (local, aws-kms, gcp-kms).

    ``context`` is the encryption context (KMS terms) / associated data (AEAD terms): the
    wrapped key only unwraps with exactly the same mapping.
    """

    key_id: str

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes: ...
