"""Bad key configuration is a startup error that names the variable and never its value."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from credentials.crypto import KeyConfigurationError, Keyring

ROOT = Path(__file__).resolve().parents[2]
GOOD = secrets.token_hex(32)


@pytest.mark.parametrize(
    ("keys", "active", "variable"),
    [
        pytest.param(
            {"AGENT_CREDENTIAL_KEY_V1": "zz" + GOOD[2:]},
            None,
            "AGENT_CREDENTIAL_KEY_V1",
            id="not-hex",
        ),
        pytest.param(
            {"AGENT_CREDENTIAL_KEY_V2": GOOD[:62]}, None, "AGENT_CREDENTIAL_KEY_V2", id="31-bytes"
        ),
        pytest.param(
            {"AGENT_CREDENTIAL_KEY_V1": GOOD},
            "v3",
            "AGENT_CREDENTIAL_KEY_V3",
            id="missing-active-key",
        ),
        pytest.param(
            {"AGENT_CREDENTIAL_KEY_V1": GOOD},
            "latest",
            "AGENT_CREDENTIAL_ACTIVE_KEY",
            id="malformed-active",
        ),
        pytest.param(
            {"AGENT_CREDENTIAL_KEY_V01": GOOD}, None, "AGENT_CREDENTIAL_KEY_V01", id="bad-name"
        ),
        pytest.param({}, None, "AGENT_CREDENTIAL_KEY_V1", id="no-key-at-all"),
    ],
)
def test_malformed_key_configuration_names_the_variable_not_the_value(keys, active, variable):
    with pytest.raises(KeyConfigurationError) as failure:
        Keyring.from_settings(keys, active)
    message = str(failure.value)
    assert variable in message
    for value in keys.values():
        assert value not in message
        assert value[:16] not in message


def test_system_check_refuses_a_malformed_key_by_name():
    bad = "g" * 64
    with (
        override_settings(CREDENTIAL_KEYS={"AGENT_CREDENTIAL_KEY_V1": bad}),
        pytest.raises(SystemCheckError) as failure,
    ):
        call_command("check")
    assert "AGENT_CREDENTIAL_KEY_V1 is not hexadecimal" in str(failure.value)
    assert bad not in str(failure.value)


@pytest.mark.parametrize(
    ("secret_key", "generated"),
    [
        ("x" * 60, False),
        ("django-insecure-" + "a1b2c3" * 10, False),
        ("short-Key-1", False),
        ("generated-but-long-" * 4, True),
    ],
)
def test_debug_off_refuses_a_weak_or_missing_secret_key(secret_key, generated):
    with (
        override_settings(DEBUG=False, SECRET_KEY=secret_key, SECRET_KEY_IS_GENERATED=generated),
        pytest.raises(SystemCheckError, match="SECRET_KEY must be set"),
    ):
        call_command("check")


def test_debug_off_accepts_a_real_secret_key():
    with override_settings(
        DEBUG=False, SECRET_KEY=secrets.token_urlsafe(50), SECRET_KEY_IS_GENERATED=False
    ):
        call_command("check")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_CREDENTIAL_", "SECRET_KEY", "DEBUG"))
    }
    env.update({"EVERESTHOOD_ENV_FILE": "", **extra})
    return env


def test_manage_py_refuses_to_start_with_debug_off_and_no_key():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=_clean_env(DEBUG="false"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    assert "AGENT_CREDENTIAL_KEY_V1" in result.stderr


def test_worker_refuses_to_start_with_a_31_byte_key_and_names_it(tmp_path):
    short_key = secrets.token_hex(31)
    result = subprocess.run(
        [sys.executable, "-m", "celery", "--quiet", "-A", "config", "worker", "--pool", "solo"],
        cwd=ROOT,
        env=_clean_env(
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            AGENT_CREDENTIAL_KEY_V1=short_key,
            EVERESTHOOD_VAR_DIR=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "AGENT_CREDENTIAL_KEY_V1 has 62 hex characters" in output
    assert short_key not in output


def test_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(GOOD + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(sorted(settings.CREDENTIAL_KEYS))",
        ],
        cwd=ROOT,
        env=_clean_env(
            DJANGO_SETTINGS_MODULE="config.settings",
            AGENT_CREDENTIAL_KEY_V4_FILE=str(key_file),
            EVERESTHOOD_VAR_DIR=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['AGENT_CREDENTIAL_KEY_V4']"
