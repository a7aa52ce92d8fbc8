"""The keyring: every configured KEK by key id, and which one wraps new data keys.

Local keys come from AGENT_CREDENTIAL_KEY_V<n> (64 hex characters each), collected by
settings without a code change per key. AGENT_CREDENTIAL_ACTIVE_KEY (``v2`` or ``local:v2``)
picks the key for new writes; default: the highest version.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

from credentials.crypto.errors import KeyConfigurationError, KeyNotConfiguredError
from credentials.crypto.providers import KeyProvider
from credentials.crypto.providers.local import LocalKeyProvider

LOCAL_KEY_PREFIX = "AGENT_CREDENTIAL_KEY_"
ACTIVE_KEY_VARIABLE = "AGENT_CREDENTIAL_ACTIVE_KEY"
_LOCAL_NAME_RE = re.compile(r"^AGENT_CREDENTIAL_KEY_V([1-9][0-9]{0,5})$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
_ACTIVE_RE = re.compile(r"^(?:local:)?v([1-9][0-9]{0,5})$")


def local_key_id(version: int) -> str:
    return f"local:v{version}"


def local_key_variable(key_id: str) -> str | None:
    """The environment variable that holds a local key id (`local:v2` -> ..._KEY_V2)."""
    match = re.fullmatch(r"local:v([1-9][0-9]*)", key_id)
    return f"{LOCAL_KEY_PREFIX}V{match.group(1)}" if match else None


class Keyring:
    def __init__(self, providers: Mapping[str, KeyProvider], active_key_id: str) -> None:
        if active_key_id not in providers:
            raise KeyConfigurationError(f"active key {active_key_id} is not configured")
        self._providers = dict(providers)
        self.active_key_id = active_key_id

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._providers)

    @property
    def active(self) -> KeyProvider:
        return self._providers[self.active_key_id]

    def provider(self, key_id: str) -> KeyProvider:
        try:
            return self._providers[key_id]
        except KeyError:
            raise KeyNotConfiguredError(key_id) from None

    @classmethod
    def from_settings(cls, keys: Mapping[str, str], active: str | None) -> Keyring:
        """Validate every variable; the first problem found is reported by variable name."""
        providers: dict[str, KeyProvider] = {}
        versions: list[int] = []
        for name in sorted(keys):
            match = _LOCAL_NAME_RE.match(name)
            if not match:
                raise KeyConfigurationError(
                    f"{name} is not a valid key variable name: expected "
                    f"{LOCAL_KEY_PREFIX}V<n> with n a positive integer without leading zeros"
                )
            value = keys[name].strip()
            if not _HEX_RE.match(value):
                raise KeyConfigurationError(
                    f"{name} is not hexadecimal: it must be 64 hex characters (32 bytes); "
                    f"generate one with `python manage.py credential_keys generate`"
                )
            if len(value) != 64:
                raise KeyConfigurationError(
                    f"{name} has {len(value)} hex characters ({len(value) // 2} bytes); "
                    f"it must have 64 (32 bytes)"
                )
            version = int(match.group(1))
            versions.append(version)
            providers[local_key_id(version)] = LocalKeyProvider(
                local_key_id(version), bytes.fromhex(value)
            )
        if not providers:
            raise KeyConfigurationError(
                f"no credential key is configured: set {LOCAL_KEY_PREFIX}V1 to 64 hex "
                f"characters (32 random bytes)"
            )
        if active:
            match = _ACTIVE_RE.match(active.strip())
            if not match:
                raise KeyConfigurationError(f"{ACTIVE_KEY_VARIABLE} must look like v2 or local:v2")
            active_key_id = local_key_id(int(match.group(1)))
            if active_key_id not in providers:
                raise KeyConfigurationError(
                    f"{ACTIVE_KEY_VARIABLE} names {active_key_id}, but "
                    f"{local_key_variable(active_key_id)} is not set"
                )
        else:
            active_key_id = local_key_id(max(versions))
        return cls(providers, active_key_id)


_lock = threading.Lock()
_cached: Keyring | None = None


def get_keyring() -> Keyring:
    """The process's keyring, built from settings on first use (raises KeyConfigurationError)."""
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                from django.conf import settings

                _cached = Keyring.from_settings(
                    settings.CREDENTIAL_KEYS, settings.AGENT_CREDENTIAL_ACTIVE_KEY
                )
    return _cached


def reset_keyring() -> None:
    """Forget the cached keyring (settings changed, e.g. in tests)."""
    global _cached
    with _lock:
        _cached = None
