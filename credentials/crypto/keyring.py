"""The keyring: every configured KEK by key id, and which one wraps new data keys.

Everything comes from the environment (through settings); adding a key is never a code change.

- Local keys: AGENT_CREDENTIAL_KEY_V<n> (64 hex characters each) -> key id `local:v<n>`.
- KMS keys: AGENT_CREDENTIAL_KMS_KEYS, a comma-separated list of key ids,
  `aws-kms:<KeyId, key ARN, alias/name or alias ARN>` and
  `gcp-kms:projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`.
- AGENT_CREDENTIAL_ACTIVE_KEY picks the key for new writes: any configured key id, or `v2` for
  `local:v2`. Default: the highest local version; with no local key, the only KMS key.

Several providers can be configured at once, so a rotation can move rows between them and every
configured key keeps decrypting during the move.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

from credentials.crypto.errors import KeyConfigurationError, KeyNotConfiguredError
from credentials.crypto.providers import (
    AWS_KMS,
    GCP_KMS,
    LOCAL,
    KeyProvider,
    KmsClientSettings,
    provider_name,
)
from credentials.crypto.providers.local import LocalKeyProvider

LOCAL_KEY_PREFIX = "AGENT_CREDENTIAL_KEY_"
KMS_KEYS_VARIABLE = "AGENT_CREDENTIAL_KMS_KEYS"
ACTIVE_KEY_VARIABLE = "AGENT_CREDENTIAL_ACTIVE_KEY"
# Credential.key_id holds at most this many characters.
MAX_KEY_ID_LENGTH = 255
_LOCAL_NAME_RE = re.compile(r"^AGENT_CREDENTIAL_KEY_V([1-9][0-9]{0,5})$")
_LOCAL_ID_RE = re.compile(r"^local:v([1-9][0-9]{0,5})$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
_SHORT_LOCAL_RE = re.compile(r"^v([1-9][0-9]{0,5})$")
_AWS_KEY_RE = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|mrk-[0-9a-fA-F]{32}"
    r"|alias/[A-Za-z0-9/_-]{1,250}"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(?:key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+))$"
)
_GCP_KEY_RE = re.compile(
    r"^projects/[A-Za-z0-9.:_-]+/locations/[A-Za-z0-9_-]+"
    r"/keyRings/[A-Za-z0-9_-]{1,63}/cryptoKeys/[A-Za-z0-9_-]{1,63}$"
)


def local_key_id(version: int) -> str:
    return f"local:v{version}"


def local_key_variable(key_id: str) -> str | None:
    """The environment variable that holds a local key id (`local:v2` -> ..._KEY_V2)."""
    match = re.fullmatch(r"local:v([1-9][0-9]*)", key_id)
    return f"{LOCAL_KEY_PREFIX}V{match.group(1)}" if match else None


def key_variable(key_id: str) -> str:
    """Where a key id is configured: its own variable (local) or the KMS list."""
    return local_key_variable(key_id) or KMS_KEYS_VARIABLE


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

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._providers

    @classmethod
    def from_settings(
        cls,
        keys: Mapping[str, str],
        active: str | None,
        *,
        kms_keys: str = "",
        kms: KmsClientSettings | None = None,
    ) -> Keyring:
        """Validate every variable; the first problem found is reported by variable name.

        Nothing here reaches a key service: KMS clients are built on first use.
        """
        providers: dict[str, KeyProvider] = {}
        versions: list[int] = []
        for name in sorted(keys):
            version, provider = _local_provider(name, keys[name])
            versions.append(version)
            providers[provider.key_id] = provider
        for key_id in _kms_key_ids(kms_keys):
            if key_id in providers:
                raise KeyConfigurationError(f"{KMS_KEYS_VARIABLE} lists {key_id} twice")
            providers[key_id] = _kms_provider(key_id, kms or KmsClientSettings())
        if not providers:
            raise KeyConfigurationError(
                f"no credential key is configured: set {LOCAL_KEY_PREFIX}V1 to 64 hex "
                f"characters (32 random bytes), or list KMS keys in {KMS_KEYS_VARIABLE}"
            )
        return cls(providers, _active_key_id(active, providers, versions))


def _local_provider(name: str, raw_value: str) -> tuple[int, LocalKeyProvider]:
    match = _LOCAL_NAME_RE.match(name)
    if not match:
        raise KeyConfigurationError(
            f"{name} is not a valid key variable name: expected "
            f"{LOCAL_KEY_PREFIX}V<n> with n a positive integer without leading zeros"
        )
    value = raw_value.strip()
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
    return version, LocalKeyProvider(local_key_id(version), bytes.fromhex(value))


def _kms_key_ids(raw: str) -> list[str]:
    """Key ids are identifiers, not secrets: quoting a bad entry in the error is safe."""
    entries = [entry.strip() for entry in raw.split(",")] if raw.strip() else []
    for entry in entries:
        if not entry:
            raise KeyConfigurationError(f"{KMS_KEYS_VARIABLE} has an empty entry")
        provider, _, name = entry.partition(":")
        if provider == LOCAL:
            raise KeyConfigurationError(
                f"{KMS_KEYS_VARIABLE} lists {entry!r}: local keys come from "
                f"{LOCAL_KEY_PREFIX}V<n> variables"
            )
        if provider == AWS_KMS and not _AWS_KEY_RE.match(name):
            raise KeyConfigurationError(
                f"{KMS_KEYS_VARIABLE} lists {entry!r}: expected aws-kms: followed by a KMS "
                f"key id, key ARN, alias/<name> or alias ARN"
            )
        if provider == GCP_KMS and not _GCP_KEY_RE.match(name):
            raise KeyConfigurationError(
                f"{KMS_KEYS_VARIABLE} lists {entry!r}: expected gcp-kms:projects/<project>/"
                f"locations/<location>/keyRings/<ring>/cryptoKeys/<key>"
            )
        if provider not in {AWS_KMS, GCP_KMS}:
            raise KeyConfigurationError(
                f"{KMS_KEYS_VARIABLE} lists {entry!r}: the provider must be {AWS_KMS} or "
                f"{GCP_KMS} (as in aws-kms:alias/vault)"
            )
        if len(entry) > MAX_KEY_ID_LENGTH:
            raise KeyConfigurationError(
                f"{KMS_KEYS_VARIABLE} lists a key id of {len(entry)} characters; at most "
                f"{MAX_KEY_ID_LENGTH} fit (use an alias)"
            )
    return entries


def _kms_provider(key_id: str, kms: KmsClientSettings) -> KeyProvider:
    name = key_id.partition(":")[2]
    if provider_name(key_id) == AWS_KMS:
        from credentials.crypto.providers.aws_kms import AwsKmsKeyProvider

        return AwsKmsKeyProvider(key_id, name, kms)
    from credentials.crypto.providers.gcp_kms import GcpKmsKeyProvider

    return GcpKmsKeyProvider(key_id, name, kms)


def normalise_key_id(value: str) -> str:
    """A key id as operators may type it (`v3`, `local:v3`, `aws-kms:alias/x`) in full form."""
    value = value.strip()
    short = _SHORT_LOCAL_RE.match(value)
    return local_key_id(int(short.group(1))) if short else value


def _active_key_id(
    active: str | None, providers: Mapping[str, KeyProvider], versions: list[int]
) -> str:
    if not active or not active.strip():
        if versions:
            return local_key_id(max(versions))
        if len(providers) == 1:
            return next(iter(providers))
        raise KeyConfigurationError(
            f"{ACTIVE_KEY_VARIABLE} must name the key for new writes: several KMS keys are "
            f"configured and no local key"
        )
    key_id = normalise_key_id(active)
    if key_id in providers:
        return key_id
    if _LOCAL_ID_RE.match(key_id):
        raise KeyConfigurationError(
            f"{ACTIVE_KEY_VARIABLE} names {key_id}, but {local_key_variable(key_id)} is not set"
        )
    if provider_name(key_id) in {AWS_KMS, GCP_KMS}:
        raise KeyConfigurationError(
            f"{ACTIVE_KEY_VARIABLE} names {key_id}, but {KMS_KEYS_VARIABLE} does not list it"
        )
    raise KeyConfigurationError(
        f"{ACTIVE_KEY_VARIABLE} must be a configured key id (local:v2, aws-kms:alias/vault, "
        f"gcp-kms:projects/...) or v<n>"
    )


def kms_client_settings() -> KmsClientSettings:
    from django.conf import settings

    return KmsClientSettings(
        aws_endpoint_url=settings.AWS_KMS_ENDPOINT_URL,
        aws_region=settings.AWS_KMS_REGION,
        gcp_endpoint_url=settings.GCP_KMS_ENDPOINT_URL,
        gcp_anonymous_credentials=settings.GCP_KMS_ANONYMOUS_CREDENTIALS,
        timeout_seconds=settings.CREDENTIAL_KMS_TIMEOUT_SECONDS,
        max_attempts=settings.CREDENTIAL_KMS_MAX_ATTEMPTS,
    )


def keyring_from_django_settings() -> Keyring:
    """Build (and validate) the keyring the settings describe, without caching it."""
    from django.conf import settings

    return Keyring.from_settings(
        settings.CREDENTIAL_KEYS,
        settings.AGENT_CREDENTIAL_ACTIVE_KEY,
        kms_keys=settings.AGENT_CREDENTIAL_KMS_KEYS,
        kms=kms_client_settings(),
    )


# Settings whose change must rebuild the cached keyring (tests, override_settings).
KEYRING_SETTINGS = frozenset(
    {
        "CREDENTIAL_KEYS",
        "AGENT_CREDENTIAL_ACTIVE_KEY",
        "AGENT_CREDENTIAL_KMS_KEYS",
        "AWS_KMS_ENDPOINT_URL",
        "AWS_KMS_REGION",
        "GCP_KMS_ENDPOINT_URL",
        "GCP_KMS_ANONYMOUS_CREDENTIALS",
        "CREDENTIAL_KMS_TIMEOUT_SECONDS",
        "CREDENTIAL_KMS_MAX_ATTEMPTS",
    }
)

_lock = threading.Lock()
_cached: Keyring | None = None


def get_keyring() -> Keyring:
    """The process's keyring, built from settings on first use (raises KeyConfigurationError)."""
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                _cached = keyring_from_django_settings()
    return _cached


def reset_keyring() -> None:
    """Forget the cached keyring (settings changed, e.g. in tests)."""
    global _cached
    with _lock:
        _cached = None
