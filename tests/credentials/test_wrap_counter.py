"""The per-key wrap counter is exact: every seal and re-wrap adds to it in the transaction that
stores the wrap, also under concurrent writers."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from credentials.models import KeyUsage
from credentials.services import credential_create, credential_replace_secret


@pytest.mark.django_db
def test_every_create_and_replace_counts_one_wrap_under_the_active_key(personas):
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name="a", secret="first secret"
    )
    credential_replace_secret(credential=credential, acting_user=None, secret="second secret")
    assert KeyUsage.objects.get(key_id="local:v2").wraps == 2


@pytest.mark.django_db
def test_a_write_that_rolls_back_counts_nothing(personas):
    def create_then_fail() -> None:
        with transaction.atomic():
            credential_create(org=personas.org, acting_user=None, name="b", secret="rolled back")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert not KeyUsage.objects.filter(key_id="local:v2").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_lose_no_increment():
    def writer() -> None:
        try:
            for _ in range(25):
                with transaction.atomic():
                    KeyUsage.objects.add_wraps(key_id="local:v9", count=1)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert KeyUsage.objects.get(key_id="local:v9").wraps == 100
