"""Checks every process runs before it serves: web (wsgi/asgi and manage.py commands through
Django's system checks) and Celery workers (worker_init). A failure is an ImproperlyConfigured
that names the variable to fix and never prints its value."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

STARTUP_TAG = "everesthood"

_INSECURE_PREFIX = "django-insecure"


@register(STARTUP_TAG)
def check_production_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    key = settings.SECRET_KEY
    if (
        settings.SECRET_KEY_IS_GENERATED
        or key.startswith(_INSECURE_PREFIX)
        or len(key) < 50
        or len(set(key)) < 5
    ):
        errors.append(
            Error(
                "SECRET_KEY must be set to a random value of at least 50 characters when "
                "DEBUG is off (or SECRET_KEY_FILE to a file holding one)",
                id="config.E001",
            )
        )
    return errors


# A bearer token guessable in a scrape interval's worth of tries is no access control.
METRICS_TOKEN_MIN_LENGTH = 32


@register(STARTUP_TAG)
def check_observability_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from config.telemetry import check_settings

    errors: list[CheckMessage] = [
        Error(problem, id="config.E002")
        for problem in check_settings(
            settings.OTEL_TRACES_EXPORTER, settings.OTEL_EXPORTER_OTLP_PROTOCOL
        )
    ]
    token = settings.METRICS_TOKEN
    if token is not None and len(token) < METRICS_TOKEN_MIN_LENGTH:
        errors.append(
            Error(
                f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_LENGTH} characters (or "
                f"unset, so that only staff sessions may read /api/metrics)",
                id="config.E003",
            )
        )
    return errors


def verify_startup() -> None:
    """Run the startup checks, database checks included (stored key ids must be configured);
    log warnings, and raise ImproperlyConfigured listing every error."""
    import logging

    from django.core.checks import run_checks
    from django.db import DEFAULT_DB_ALIAS

    messages = run_checks(tags=[STARTUP_TAG], databases=[DEFAULT_DB_ALIAS])
    for message in messages:
        if not message.is_serious():
            logging.getLogger("everesthood.startup").warning("%s: %s", message.id, message.msg)
    errors = [m for m in messages if m.is_serious()]
    if errors:
        lines = "\n".join(f"  {m.id}: {m.msg}" for m in errors)
        raise ImproperlyConfigured(f"Refusing to start:\n{lines}")
