"""Startup checks: KMS key configuration errors name the variable; a stored key id without a
configured key is an error naming what to set; a local key past its wrap threshold warns."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from config.startup import verify_startup
from credentials.crypto import KeyConfigurationError, Keyring
from credentials.models import KeyUsage
from tests.conftest import TEST_KEYS
from tests.credentials.conftest import key_settings, store_credentials

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _real_secret_key():
    # Only the key checks are under test here; config.E001 wants a real SECRET_KEY.
    with override_settings(SECRET_KEY=secrets.token_urlsafe(50), SECRET_KEY_IS_GENERATED=False):
        yield


GCP = "gcp-kms:projects/p/locations/europe-west1/keyRings/vault/cryptoKeys/credentials"


@pytest.mark.parametrize(
    ("kms_keys", "active", "variable", "fragment"),
    [
        pytest.param(
            "azure-kv:key",
            None,
            "AGENT_CREDENTIAL_KMS_KEYS",
            "must be aws-kms or gcp-kms",
            id="unknown-provider",
        ),
        pytest.param(
            "aws-kms:", None, "AGENT_CREDENTIAL_KMS_KEYS", "expected aws-kms:", id="empty-aws"
        ),
        pytest.param(
            "aws-kms:alias/a b", None, "AGENT_CREDENTIAL_KMS_KEYS", "expected aws-kms:", id="space"
        ),
        pytest.param(
            "gcp-kms:projects/p",
            None,
            "AGENT_CREDENTIAL_KMS_KEYS",
            "expected gcp-kms:projects/",
            id="short-gcp",
        ),
        pytest.param(
            "local:v1",
            None,
            "AGENT_CREDENTIAL_KMS_KEYS",
            "local keys come from",
            id="local-in-kms-list",
        ),
        pytest.param(
            "aws-kms:alias/a,aws-kms:alias/a",
            None,
            "AGENT_CREDENTIAL_KMS_KEYS",
            "twice",
            id="duplicate",
        ),
        pytest.param(
            "aws-kms:alias/a,",
            None,
            "AGENT_CREDENTIAL_KMS_KEYS",
            "empty entry",
            id="trailing-comma",
        ),
        pytest.param(
            "aws-kms:alias/a",
            "aws-kms:alias/b",
            "AGENT_CREDENTIAL_ACTIVE_KEY",
            "does not list it",
            id="active-not-listed",
        ),
        pytest.param(
            f"aws-kms:alias/a,{GCP}",
            None,
            "AGENT_CREDENTIAL_ACTIVE_KEY",
            "several KMS keys",
            id="no-active-among-several",
        ),
    ],
)
def test_malformed_kms_configuration_names_the_variable(kms_keys, active, variable, fragment):
    with pytest.raises(KeyConfigurationError) as failure:
        Keyring.from_settings({}, active, kms_keys=kms_keys)
    assert variable in str(failure.value)
    assert fragment in str(failure.value)


def test_any_mix_of_providers_is_configured_by_the_environment_alone(tmp_path):
    """No code change: the variables alone give a keyring with local and KMS keys, any of
    which can be the active one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_CREDENTIAL_")}
    env.update(TEST_KEYS)
    env.update(
        {
            "EVERESTHOOD_ENV_FILE": "",
            "EVERESTHOOD_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "AGENT_CREDENTIAL_KMS_KEYS": f"aws-kms:alias/vault, {GCP}",
            "AGENT_CREDENTIAL_ACTIVE_KEY": "aws-kms:alias/vault",
        }
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from credentials.crypto import get_keyring; "
            "r = get_keyring(); print(r.key_ids); print(r.active_key_id)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        str(["aws-kms:alias/vault", GCP, "local:v1", "local:v2"]),
        "aws-kms:alias/vault",
    ]


def test_the_active_key_may_be_given_in_full_or_short(db):
    assert Keyring.from_settings(TEST_KEYS, "local:v1").active_key_id == "local:v1"
    assert Keyring.from_settings(TEST_KEYS, "v1").active_key_id == "local:v1"
    only_kms = Keyring.from_settings({}, None, kms_keys="aws-kms:alias/vault")
    assert only_kms.active_key_id == "aws-kms:alias/vault"


@pytest.mark.django_db
def test_a_stored_key_id_without_a_configured_key_is_a_startup_error_naming_the_variable(personas):
    with override_settings(
        CREDENTIAL_KEYS={**TEST_KEYS, "AGENT_CREDENTIAL_KEY_V5": "ab" * 32},
        AGENT_CREDENTIAL_ACTIVE_KEY="v5",
    ):
        store_credentials(personas.org, 3)
    with pytest.raises(SystemCheckError) as failure:
        call_command("check", "--database", "default")
    assert "credentials.E002" in str(failure.value)
    assert (
        "3 credential(s) are stored under key local:v5, which is not configured: set "
        "AGENT_CREDENTIAL_KEY_V5" in str(failure.value)
    )
    assert "ab" * 32 not in str(failure.value)
    with pytest.raises(ImproperlyConfigured, match="AGENT_CREDENTIAL_KEY_V5"):
        verify_startup()


@pytest.mark.django_db
def test_a_stored_kms_key_id_that_is_no_longer_listed_names_the_list(personas, aws_key):
    from tests.credentials.conftest import aws_settings

    with key_settings(kms_keys=[aws_key.key_id], active=aws_key.key_id, **aws_settings(aws_key)):
        store_credentials(personas.org, 1)
    with pytest.raises(SystemCheckError) as failure:
        call_command("check", "--database", "default")
    assert f"add {aws_key.key_id} to AGENT_CREDENTIAL_KMS_KEYS" in str(failure.value)


@pytest.mark.django_db
def test_a_local_key_past_the_wrap_threshold_warns_to_rotate(personas):
    store_credentials(personas.org, 5)
    KeyUsage.objects.create(key_id="aws-kms:alias/busy", wraps=10**12)
    err = io.StringIO()
    with override_settings(CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD=5):
        call_command("check", "--database", "default", stderr=err, stdout=io.StringIO())
    assert "credentials.W001" in err.getvalue()
    assert "key local:v2 has wrapped 5 data keys, past CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD" in (
        err.getvalue()
    )
    assert "Rotate to a new key" in err.getvalue()
    # KMS keys manage their own key material: no warning for them.
    assert "aws-kms:alias/busy" not in err.getvalue()
    with override_settings(CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD=6):
        quiet = io.StringIO()
        call_command("check", "--database", "default", stderr=quiet, stdout=io.StringIO())
        assert "W001" not in quiet.getvalue()


def test_checks_without_a_database_only_validate_the_configuration():
    # No database access here (pytest-django would refuse it): plain `check` stays offline.
    call_command("check", stdout=io.StringIO())
