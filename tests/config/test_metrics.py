"""The vault's own metrics: what each counts, that the workers' counts reach /api/metrics
(multiprocess mode), and that no label is ever a secret or an unbounded value."""

from __future__ import annotations

import re
import secrets
import uuid

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from agents.services import BindingSpec, agent_create, agent_run_create
from config import metrics
from credentials.services import credential_create
from tests.conftest import TEST_KEYS

TOKEN = "m" * 40


def _scrape(client, settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/api/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _agent(personas, url, secret, name):
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name=f"{name}-key", secret=secret
    )
    return agent_create(
        org=personas.org,
        acting_user=personas.member,
        name=name,
        config={"url": url},
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_what_the_worker_counts_is_on_the_web_processes_metrics_page(
    personas, celery_worker, endpoint, canary, client, settings
):
    before = _scrape(client, settings)
    good = _agent(personas, endpoint.url, canary, "good")
    bad = _agent(personas, endpoint.url, "not-" + canary, "bad")
    with override_settings(
        CREDENTIAL_KEYS={**TEST_KEYS, "AGENT_CREDENTIAL_KEY_V3": secrets.token_hex(32)}
    ):
        # Written under a key the worker does not have: its decrypt fails, key unconfigured.
        orphan = _agent(personas, endpoint.url, canary, "orphan")
    for agent in (good, bad, orphan):
        celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)
    after = _scrape(client, settings)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    # Counted in the worker process, read here: multiprocess mode works.
    assert delta("everesthood_agent_runs_total", status="succeeded") == 1
    assert delta("everesthood_agent_runs_total", status="failed") == 2
    assert delta("everesthood_agent_run_duration_seconds_count", status="failed") == 2
    assert delta("everesthood_credential_decrypts_total", key_id="local:v2", outcome="success") == 2
    assert (
        delta("everesthood_credential_decrypts_total", key_id="unconfigured", outcome="key_missing")
        == 1
    )
    # Counted in this process, when each creating transaction committed.
    assert delta("everesthood_credentials_encrypted_total", key_id="local:v2") == 2
    assert delta("everesthood_credentials_encrypted_total", key_id="local:v3") == 1


@pytest.mark.django_db
def test_an_encryption_rolled_back_is_not_counted(personas, client, settings, canary):
    from django.db import transaction

    encrypted = "everesthood_credentials_encrypted_total"
    before = _value(_scrape(client, settings), encrypted, key_id="local:v2")

    def create_then_fail():
        with transaction.atomic():
            credential_create(org=personas.org, acting_user=None, name="gone", secret=canary)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert _value(_scrape(client, settings), encrypted, key_id="local:v2") == before


@pytest.mark.django_db
def test_rotation_batches_report_rows_moved_and_rows_remaining(client, settings):
    # The rotate command (issue #3) calls this after each committed batch.
    before = _scrape(client, settings)
    metrics.observe_rotation_batch(to_key_id="local:v2", rows=1000, remaining=2500, reencrypt=False)
    metrics.observe_rotation_batch(to_key_id="local:v2", rows=500, remaining=2000, reencrypt=True)
    after = _scrape(client, settings)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    key = {"to_key_id": "local:v2"}
    assert delta("everesthood_key_rotation_rows_total", mode="rewrap", **key) == 1000
    assert delta("everesthood_key_rotation_rows_total", mode="reencrypt", **key) == 500
    assert delta("everesthood_key_rotation_batches_total", mode="rewrap", **key) == 1
    assert _value(after, "everesthood_key_rotation_rows_remaining", **key) == 2000
    assert delta("everesthood_credentials_encrypted_total", key_id="local:v2") == 500


def test_a_denied_access_is_labelled_by_the_entity_of_its_action_only():
    assert metrics.denied_kind("metrics.access_denied") == "metrics"
    assert metrics.denied_kind("credential.decrypt") == "credential"
    assert metrics.denied_kind("agent_token.use_revoked") == "agent_token"
    assert metrics.denied_kind("Weird Action!") == "other"
    assert metrics.denied_kind("x" * 60 + ".y") == "other"


def test_an_unknown_decrypt_outcome_or_run_status_is_refused_rather_than_minting_a_series():
    with pytest.raises(ValueError, match="outcome"):
        metrics.observe_decrypt(key_id="local:v2", outcome=f"oops-{uuid.uuid4()}")
    with pytest.raises(ValueError, match="status"):
        metrics.observe_run_finished(status="running", seconds=1.0)


_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
_OUR_LABELS = {
    "everesthood_credentials_encrypted": {"key_id"},
    "everesthood_credential_decrypts": {"key_id", "outcome"},
    "everesthood_agent_runs": {"status"},
    "everesthood_agent_run_duration_seconds": {"status", "le"},
    "everesthood_key_rotation_rows": {"to_key_id", "mode"},
    "everesthood_key_rotation_batches": {"to_key_id", "mode"},
    "everesthood_key_rotation_rows_remaining": {"to_key_id"},
    "everesthood_denied_accesses": {"kind"},
}
_KEY_ID = re.compile(r"(local:v\d+|unconfigured)")
_BOUNDED_VALUES = {
    "outcome": metrics.DECRYPT_OUTCOMES,
    "status": metrics.RUN_STATUSES,
    "mode": metrics.ROTATION_MODES,
}


@pytest.mark.django_db
def test_no_label_is_an_id_a_secret_or_free_text(client, settings, personas, canary):
    # Some traffic first, so the django_* families have samples: requests by view, a 404.
    client.force_login(personas.member)
    client.get("/api/orgs/")
    client.get(f"/api/orgs/acme/credentials/{uuid.uuid4()}/?token={canary}")
    client.get(f"/no-such-page-{canary}")
    settings.METRICS_TOKEN = TOKEN
    text = client.get("/api/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert canary not in text
    families = list(text_string_to_metric_families(text))
    ours = {f.name for f in families if f.name.startswith("everesthood_")}
    assert ours <= set(_OUR_LABELS)
    for family in families:
        for sample in family.samples:
            # Multiprocess gauges in "all" mode would add one series per process id.
            assert "pid" not in sample.labels, sample
            for name, value in sample.labels.items():
                assert not _UUID.search(value), (family.name, name, value)
                assert "acme" not in value, (family.name, name, value)
            if family.name in _OUR_LABELS:
                assert set(sample.labels) <= _OUR_LABELS[family.name], sample
                for name, value in sample.labels.items():
                    if name in _BOUNDED_VALUES:
                        assert value in _BOUNDED_VALUES[name], sample
                    elif name.endswith("key_id"):
                        assert _KEY_ID.fullmatch(value), sample
                    elif name == "kind":
                        assert re.fullmatch(r"[a-z][a-z0-9_]{0,31}", value), sample
