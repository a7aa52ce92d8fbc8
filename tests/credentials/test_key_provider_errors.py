"""A key service that throttles, refuses or cannot be reached gives a clear error naming the
key and the service's reason, after a bounded number of attempts; a run that cannot get its key
fails cleanly, audited, without retrying."""

from __future__ import annotations

import json
import os
import secrets

import pytest
from django.db import connection

from agents.models import AgentRun, RunStatus
from agents.services import BindingSpec, agent_create
from agents.tasks import run_agent
from agents.worker_process import WorkerProcess, database_url
from audit.models import AuditEvent
from credentials import crypto
from credentials.crypto import EncryptionContext
from credentials.models import Credential
from credentials.services import credential_create
from tests.conftest import SESSION_QUEUE, TEST_KEYS, RunningWorker
from tests.credentials.conftest import aws_settings, gcp_settings, key_settings
from tests.credentials.kms_fakes import AWS_TEST_ENV, ErrorServer, free_port
from tests.raw_storage import read_envelope

GCP_KEY = "gcp-kms:projects/p/locations/global/keyRings/r/cryptoKeys/k"
AWS_KEY = "aws-kms:alias/vault"
CONTEXT = EncryptionContext(org_id="org-1", credential_id="cred-1")

AWS_ERRORS = [
    pytest.param(400, "ThrottlingException", "Rate exceeded", "throttled", 2, id="throttled"),
    pytest.param(
        400,
        "AccessDeniedException",
        "User: arn:aws:iam::111122223333:role/web is not authorized to perform: kms:Encrypt",
        "access_denied",
        1,
        id="access-denied",
    ),
    pytest.param(400, "DisabledException", "key is disabled", "key_unusable", 1, id="disabled"),
]
GCP_ERRORS = [
    pytest.param(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "throttled", 2, id="throttled"),
    pytest.param(
        403,
        "PERMISSION_DENIED",
        "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied",
        "access_denied",
        1,
        id="access-denied",
    ),
    pytest.param(
        400, "FAILED_PRECONDITION", "key version is disabled", "key_unusable", 1, id="disabled"
    ),
]


@pytest.mark.parametrize(("status", "code", "message", "kind", "attempts"), AWS_ERRORS)
def test_aws_kms_errors_are_named_and_retried_a_bounded_number_of_times(
    aws_test_env, status, code, message, kind, attempts
):
    with ErrorServer(status=status, code=code, message=message, style="aws") as server:
        settings = {"AWS_KMS_ENDPOINT_URL": server.url, "AWS_KMS_REGION": "eu-west-1"}
        with (
            key_settings(
                kms_keys=[AWS_KEY], active=AWS_KEY, CREDENTIAL_KMS_MAX_ATTEMPTS=2, **settings
            ),
            pytest.raises(crypto.KeyProviderError) as failure,
        ):
            crypto.seal(b"secret", context=CONTEXT)
    error = failure.value
    assert (error.key_id, error.kind) == (AWS_KEY, kind)
    assert str(error).startswith(
        f"key {AWS_KEY}: {kind.replace('_', ' ')}: encrypt answered {code}"
    )
    assert message in str(error)
    # Retryable errors are tried CREDENTIAL_KMS_MAX_ATTEMPTS times, the others once.
    assert len(server.requests) == attempts


@pytest.mark.parametrize(("status", "code", "message", "kind", "attempts"), GCP_ERRORS)
def test_gcp_kms_errors_are_named_and_retried_a_bounded_number_of_times(
    status, code, message, kind, attempts
):
    with (
        ErrorServer(status=status, code=code, message=message, style="gcp") as server,
        key_settings(
            kms_keys=[GCP_KEY],
            active=GCP_KEY,
            CREDENTIAL_KMS_MAX_ATTEMPTS=2,
            **gcp_settings(server.url),
        ),
        pytest.raises(crypto.KeyProviderError) as failure,
    ):
        crypto.seal(b"secret", context=CONTEXT)
    error = failure.value
    assert (error.key_id, error.kind) == (GCP_KEY, kind)
    assert message in str(error)
    assert len(server.requests) == attempts


@pytest.mark.parametrize("provider", ["aws", "gcp"])
def test_an_unreachable_key_service_is_named_as_such(aws_test_env, provider):
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    key_id, settings = (
        (AWS_KEY, {"AWS_KMS_ENDPOINT_URL": nothing_listens, "AWS_KMS_REGION": "eu-west-1"})
        if provider == "aws"
        else (GCP_KEY, gcp_settings(nothing_listens))
    )
    with (
        key_settings(kms_keys=[key_id], active=key_id, CREDENTIAL_KMS_MAX_ATTEMPTS=2, **settings),
        pytest.raises(crypto.KeyProviderError) as failure,
    ):
        crypto.seal(b"secret", context=CONTEXT)
    assert failure.value.kind == "unreachable"
    assert str(failure.value).startswith(f"key {key_id}: unreachable: ")
    assert "127.0.0.1" in str(failure.value)


def test_a_provider_error_never_carries_key_material(aws_test_env):
    data_key = secrets.token_bytes(32)

    def known_data_key(n: int) -> bytes:
        return data_key + secrets.token_bytes(12) if n == 44 else secrets.token_bytes(n)

    with ErrorServer(status=400, code="ValidationException", message="bad", style="aws") as server:
        settings = {"AWS_KMS_ENDPOINT_URL": server.url, "AWS_KMS_REGION": "eu-west-1"}
        with (
            key_settings(kms_keys=[AWS_KEY], active=AWS_KEY, **settings),
            pytest.raises(crypto.KeyProviderError) as failure,
        ):
            crypto.seal(b"PLAINTEXT-MARKER", context=CONTEXT, rng=known_data_key)
    text = str(failure.value) + repr(failure.value.__cause__) + repr(failure.value.__context__)
    for form in (data_key.hex(), repr(data_key), "PLAINTEXT-MARKER"):
        assert form not in text


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.usefixtures("aws_test_env")
def test_a_run_whose_key_service_throttles_fails_cleanly_audited_and_not_retried(
    personas, endpoint, canary, aws_key, tmp_path, request
):
    """The credential was sealed under aws-kms while the service worked; the worker now finds
    it throttling: the run fails with the key and reason, after CREDENTIAL_KMS_MAX_ATTEMPTS
    calls in all, and the row is left as it was."""
    with key_settings(kms_keys=[aws_key.key_id], active=aws_key.key_id, **aws_settings(aws_key)):
        credential = credential_create(
            org=personas.org, acting_user=personas.member, name="kms-key", secret=canary
        )
    agent = agent_create(
        org=personas.org,
        acting_user=personas.member,
        name="kms-caller",
        config={"method": "GET", "url": endpoint.url},
        bindings=[
            BindingSpec(
                slot="auth",
                credential_id=credential.id,
                placement="header",
                target="Authorization",
                template="Bearer {secret}",
            )
        ],
    )
    before = read_envelope(credential.id)

    with ErrorServer(
        status=400, code="ThrottlingException", message="Rate exceeded", style="aws"
    ) as kms:
        queue = f"{SESSION_QUEUE}-kms"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_CREDENTIAL_")}
        env.update(TEST_KEYS)
        env.update(AWS_TEST_ENV)
        env.update(request.getfixturevalue("_test_keys_and_broker"))
        env.update(
            {
                "EVERESTHOOD_ENV_FILE": "",
                "DEBUG": "false",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "DATABASE_URL": database_url(connection.settings_dict),
                "AGENT_CREDENTIAL_KMS_KEYS": aws_key.key_id,
                "AWS_KMS_ENDPOINT_URL": kms.url,
                "AWS_KMS_REGION": "eu-west-1",
                "CREDENTIAL_KMS_MAX_ATTEMPTS": "3",
                "CELERY_TASK_DEFAULT_QUEUE": queue,
            }
        )
        worker = WorkerProcess(
            env=env, inherit_environment=False, queue=queue, log_path=tmp_path / "worker.log"
        )
        with worker:
            # Queued straight to this worker's own queue (the session's worker, which has no
            # KMS key, must not take it).
            run = AgentRun.objects.create(org=personas.org, agent=agent, request_id="req-kms")
            run_agent.apply_async(args=[str(run.id)], task_id=str(run.id), queue=queue)
            run = RunningWorker(process=worker, log_path=tmp_path / "worker.log").wait_for_run(
                run.id
            )
        calls = len(kms.requests)

    assert run.status == RunStatus.FAILED
    assert run.error.startswith(
        f"credential 'kms-key' could not be decrypted: key {aws_key.key_id}: throttled: "
        f"decrypt answered ThrottlingException: Rate exceeded"
    )
    assert calls == 3
    assert endpoint.received == []
    assert read_envelope(credential.id) == before
    failure = AuditEvent.objects.get(action="credential.decrypt_failed")
    assert failure.outcome == "failure"
    assert failure.metadata["key_id"] == aws_key.key_id
    assert "throttled" in failure.metadata["reason"]


@pytest.mark.django_db
def test_a_write_the_key_service_refuses_is_a_503_audited_and_stores_nothing(
    aws_test_env, personas, api_for, canary
):
    with ErrorServer(status=400, code="AccessDeniedException", message="no", style="aws") as kms:
        settings = {"AWS_KMS_ENDPOINT_URL": kms.url, "AWS_KMS_REGION": "eu-west-1"}
        with key_settings(kms_keys=[AWS_KEY], active=AWS_KEY, **settings):
            response = api_for(personas.member).post(
                f"/api/orgs/{personas.org.slug}/credentials/",
                {"name": "refused", "secret": canary},
                format="json",
            )
    assert response.status_code == 503
    assert response.json()["detail"].startswith(
        "the key service could not encrypt the secret, so nothing was stored (key "
        "aws-kms:alias/vault: access denied: encrypt answered AccessDeniedException"
    )
    assert canary not in response.content.decode()
    assert not Credential.objects.filter(name="refused").exists()
    event = AuditEvent.objects.get(action="credential.encrypt_failed")
    assert (event.outcome, event.metadata["kind"]) == ("failure", "access_denied")
    assert canary not in json.dumps(event.metadata)
