"""Startup checks for credential keys.

- E001: a malformed key configuration (names the variable, never the value);
- E002: credentials stored under a key id that is not configured (names the variable to set);
- W001: a local key that has wrapped more data keys than CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD;
- W002: the stored key ids could not be read (the database is unreachable).

E002 and W001 read the database, so they run where Django passes databases (the web and
worker start-up through config.startup, `migrate`, `check --database default`), not on every
management command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from config.startup import STARTUP_TAG
from credentials import crypto
from credentials.selectors import stored_key_usage

THRESHOLD_SETTING = "CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD"


@register(STARTUP_TAG)
def check_credential_keys(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    try:
        ring = crypto.keyring_from_django_settings()
    except crypto.KeyConfigurationError as exc:
        return [Error(str(exc), id="credentials.E001")]
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    try:
        stored, wraps = stored_key_usage()
    except DatabaseError as exc:
        return [
            Warning(
                f"could not read the stored key ids to check them against the configuration "
                f"({type(exc).__name__})",
                id="credentials.W002",
            )
        ]
    return [*_missing_keys(ring, stored), *_worn_keys(ring, wraps)]


def _missing_keys(ring: crypto.Keyring, stored: dict[str, int]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for key_id, rows in sorted(stored.items()):
        if key_id in ring:
            continue
        variable = crypto.key_variable(key_id)
        how = (
            f"set {variable}"
            if variable != crypto.KMS_KEYS_VARIABLE
            else f"add {key_id} to {variable}"
        )
        errors.append(
            Error(
                f"{rows} credential(s) are stored under key {key_id}, which is not configured: "
                f"{how} (they cannot be decrypted until it is)",
                id="credentials.E002",
            )
        )
    return errors


def _worn_keys(ring: crypto.Keyring, wraps: dict[str, int]) -> list[CheckMessage]:
    # Only local keys: AWS and GCP KMS manage the lifetime of their own key material (and
    # rotate it behind the same key id when automatic rotation is on).
    threshold = settings.CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD
    warnings: list[CheckMessage] = []
    for key_id, count in sorted(wraps.items()):
        if crypto.provider_name(key_id) != crypto.LOCAL or key_id not in ring:
            continue
        if count >= threshold:
            warnings.append(
                Warning(
                    f"key {key_id} has wrapped {count} data keys, past {THRESHOLD_SETTING} "
                    f"({threshold}): with random 96-bit nonces a key must stay far below 2^32 "
                    f"wraps. Rotate to a new key: `manage.py credential_keys generate`, then "
                    f"docs/key-rotation.md",
                    id="credentials.W001",
                )
            )
    return warnings
