"""Startup checks for credential keys: a malformed or missing key names its variable."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from config.startup import STARTUP_TAG
from credentials.crypto import KeyConfigurationError, Keyring


@register(STARTUP_TAG)
def check_credential_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        Keyring.from_settings(settings.CREDENTIAL_KEYS, settings.AGENT_CREDENTIAL_ACTIVE_KEY)
    except KeyConfigurationError as exc:
        return [Error(str(exc), id="credentials.E001")]
    return []
