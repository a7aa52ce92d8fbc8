"""Envelope encryption of one credential secret.

A fresh 256-bit data key (DEK) per seal encrypts the secret with AES-256-GCM; the active KEK
wraps the DEK. Both layers are bound to the same encryption context (organisation, credential,
format version) plus a purpose label, so a ciphertext or wrapped key copied to another row or
organisation fails to authenticate, and a wrapped DEK can never be opened as a payload.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from credentials.crypto import aead
from credentials.crypto.errors import DecryptionError
from credentials.crypto.keyring import Keyring, get_keyring
from credentials.crypto.process_role import require_decryption_allowed
from credentials.crypto.providers.local import LocalKeyProvider

FORMAT_VERSION = 1
SUPPORTED_FORMATS = frozenset({FORMAT_VERSION})
_APP = "everesthood.credential"
_NONCE_END = aead.KEY_BYTES + aead.NONCE_BYTES  # data key || payload nonce
_LOCAL_DRAW = _NONCE_END + aead.NONCE_BYTES  # ... || the local KEK's wrap nonce
_MIN_CIPHERTEXT = aead.NONCE_BYTES + aead.TAG_BYTES


class _Layer:
    """The associated data of one layer of an envelope, built on first use and then kept in
    the context's instance dict (a non-data descriptor, so later reads are plain attribute
    reads: functools.cached_property takes a lock on every first read in Python 3.11, which
    cost more than building the bytes)."""

    def __init__(self, purpose: str) -> None:
        self.purpose = purpose
        self.suffix = f',"purpose":{_json_string(purpose)}}}'

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: EncryptionContext | None, owner: type) -> aead.AssociatedData:
        if instance is None:
            raise AttributeError(self.name)
        value = instance.__dict__[self.name] = _associated_data(instance, self.purpose, self.suffix)
        return value


def _associated_data(context: EncryptionContext, purpose: str, suffix: str) -> aead.AssociatedData:
    org_id = context.org_id
    credential_id = context.credential_id
    format_text = str(context.format_version)
    return aead.AssociatedData(
        {
            "app": _APP,
            "purpose": purpose,
            "org": org_id,
            "credential": credential_id,
            "format": format_text,
        },
        # canonical_aad's JSON with the keys in sorted order, written out: json.dumps per
        # layer was the envelope's largest cost after AES itself.
        (
            f"{_AAD_PREFIX}{_json_string(credential_id)},"
            f'"format":{_json_string(format_text)},"org":{_json_string(org_id)}{suffix}'
        ).encode("ascii"),
    )


_AAD_PREFIX = f'{{"app":{_json_string(_APP)},"credential":'


@dataclass(frozen=True)
class EncryptionContext:
    org_id: str
    credential_id: str
    format_version: int = FORMAT_VERSION

    def for_purpose(self, purpose: str) -> aead.AssociatedData:
        """The associated data (KMS: encryption context) of one layer of this envelope."""
        if purpose == "payload":
            return self.payload_aad
        if purpose == "data-key":
            return self.data_key_aad
        return _associated_data(self, purpose, f',"purpose":{_json_string(purpose)}}}')

    # The two layers of the envelope, per context object: seal and open each use both once;
    # the mappings are read-only, so sharing them between calls is safe.
    payload_aad = _Layer("payload")
    data_key_aad = _Layer("data-key")


class SealedSecret(NamedTuple):
    """What is stored per credential. Immutable; a NamedTuple rather than a frozen dataclass
    because it is built on every seal and re-wrap, and a frozen dataclass costs 0.5 us more."""

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
    key_id: str | None = None,
) -> SealedSecret:
    """Encrypt a secret under a new data key wrapped by the active KEK (or ``key_id``'s)."""
    if context.format_version != FORMAT_VERSION:
        raise ValueError(f"new secrets are sealed in format {FORMAT_VERSION} only")
    ring = keyring or get_keyring()
    provider = ring.provider(key_id) if key_id else ring.active
    # One draw yields the data key and its nonce (and, with a local KEK, the wrap's nonce:
    # one os.urandom call per seal instead of two); the data key's cipher object is used once
    # and dropped. (This is the per-secret path: the Python around the AES-GCM calls was as
    # costly as the calls, so it is kept to what the format needs.)
    if type(provider) is LocalKeyProvider:
        material = rng(_LOCAL_DRAW)
        data_key, nonce = material[: aead.KEY_BYTES], material[aead.KEY_BYTES : _NONCE_END]
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, context.payload_aad.encoded)
        wrapped = provider.wrap_with_nonce(
            data_key, material[_NONCE_END:], context.data_key_aad.encoded
        )
    else:
        material = rng(_NONCE_END)
        data_key, nonce = material[: aead.KEY_BYTES], material[aead.KEY_BYTES :]
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, context.payload_aad.encoded)
        wrapped = provider.wrap(data_key, context.data_key_aad)
    return SealedSecret(provider.key_id, wrapped, ciphertext, context.format_version)


def open_sealed(
    sealed: SealedSecret, *, context: EncryptionContext, keyring: Keyring | None = None
) -> bytes:
    """Decrypt a secret. Worker processes only.

    Raises DecryptionNotAllowedError outside a worker, KeyNotConfiguredError when the row's key
    is gone, KeyProviderError when a key service cannot be used, and DecryptionError for every
    authentication failure.
    """
    # _unwrap_data_key written out: one function boundary fewer on the per-secret path.
    require_decryption_allowed()
    key_id = sealed.key_id
    format_version = sealed.format_version
    if format_version != context.format_version or format_version not in SUPPORTED_FORMATS:
        raise DecryptionError(key_id)
    data_key = (
        (keyring or get_keyring())
        .provider(key_id)
        .unwrap(sealed.wrapped_data_key, context.data_key_aad)
    )
    ciphertext = sealed.ciphertext
    if len(data_key) != aead.KEY_BYTES or len(ciphertext) < _MIN_CIPHERTEXT:
        raise DecryptionError(key_id)
    try:
        return AESGCM(data_key).decrypt(
            ciphertext[: aead.NONCE_BYTES],
            ciphertext[aead.NONCE_BYTES :],
            context.payload_aad.encoded,
        )
    except InvalidTag:
        raise DecryptionError(key_id) from None


def rewrap(
    sealed: SealedSecret,
    *,
    context: EncryptionContext,
    to_key_id: str,
    keyring: Keyring | None = None,
) -> SealedSecret:
    """The same data key and payload, wrapped by another KEK (key rotation). Worker role only:
    the data key is unwrapped, and whoever holds it can read the payload."""
    ring = keyring or get_keyring()
    target = ring.provider(to_key_id)
    data_key = _unwrap_data_key(sealed, context, ring)
    # Positional: a NamedTuple built with keywords costs ~0.2 us more, per row of a rotation.
    return SealedSecret(
        target.key_id,
        target.wrap(data_key, context.data_key_aad),
        sealed.ciphertext,
        sealed.format_version,
    )


def reseal(
    sealed: SealedSecret,
    *,
    context: EncryptionContext,
    to_key_id: str,
    keyring: Keyring | None = None,
    rng: aead.RandomBytes = os.urandom,
) -> SealedSecret:
    """Decrypt and seal again under a new data key and nonce, wrapped by ``to_key_id``
    (rotation with --reencrypt, for when a data key may have been exposed). Worker role only."""
    ring = keyring or get_keyring()
    plaintext = open_sealed(sealed, context=context, keyring=ring)
    return seal(plaintext, context=context, keyring=ring, rng=rng, key_id=to_key_id)


def _unwrap_data_key(sealed: SealedSecret, context: EncryptionContext, keyring: Keyring) -> bytes:
    require_decryption_allowed()
    if sealed.format_version not in SUPPORTED_FORMATS or (
        sealed.format_version != context.format_version
    ):
        raise DecryptionError(sealed.key_id)
    provider = keyring.provider(sealed.key_id)
    data_key = provider.unwrap(sealed.wrapped_data_key, context.data_key_aad)
    if len(data_key) != aead.KEY_BYTES:
        raise DecryptionError(sealed.key_id)
    return data_key
