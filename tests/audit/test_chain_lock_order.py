"""The chain head lock never closes a deadlock with the rows a change locks or references.

A change that inserts a row referencing another (a membership of an org, a run of an agent)
has PostgreSQL check that foreign key at commit (Django makes them DEFERRABLE INITIALLY
DEFERRED), which waits for anyone holding that row FOR UPDATE. If the check came after the
change had taken its chain's head lock, a writer holding the row and wanting the head would
wait in a circle: PostgreSQL would abort one of them. record_event runs pending checks first.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections, transaction

from audit.chain import chain_key
from audit.services import SYSTEM, record_event
from audit.verification import verify_chain
from orgs.models import Membership, Organization
from tests.audit.tamper import postgresql_only

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]

WAIT = 30  # seconds before a step that never comes fails the test (not a timing assertion)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _wait_until_blocked_on_a_lock(pid: int) -> None:
    deadline = threading.Event()
    timer = threading.Timer(WAIT, deadline.set)
    timer.start()
    try:
        with connection.cursor() as cursor:
            while not deadline.is_set():
                cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
                row = cursor.fetchone()
                if row and row[0] == "Lock":
                    return
        raise AssertionError(f"backend {pid} never waited for a lock")
    finally:
        timer.cancel()


@pytest.fixture(params=["client-side binding", "server-side binding"])
def binding(request, monkeypatch):
    """Both ways record_event sends the checks and the lock: in one round trip (client-side
    binding, the default), or as two statements (`server_side_binding` in the database
    OPTIONS, where psycopg refuses several statements in one). The test's threads open their
    connections after the flag is set, so theirs really bind server-side."""
    if request.param == "server-side binding":
        options = dict(connections.settings["default"].get("OPTIONS", {}))
        options["server_side_binding"] = True
        monkeypatch.setitem(connections.settings["default"], "OPTIONS", options)
    return request.param


def test_a_change_waiting_on_a_locked_row_does_not_deadlock_with_its_holder(personas, binding):
    org = personas.org
    newcomer = User.objects.create_user(username="newcomer")
    row_locked, may_record = threading.Event(), threading.Event()
    joiner_pid: list[int] = []

    def holder() -> None:
        # Locks the org row, then records an event: the worker's claim-then-audit pattern.
        try:
            with transaction.atomic():
                Organization.objects.select_for_update().get(pk=org.pk)
                row_locked.set()
                assert may_record.wait(WAIT)
                record_event(action="test.holder", org=org, actor=SYSTEM)
        finally:
            connections.close_all()

    def joiner() -> None:
        # References the locked row (a deferred foreign key), then records an event.
        try:
            assert row_locked.wait(WAIT)
            joiner_pid.append(_backend_pid())
            with transaction.atomic():
                Membership.objects.create(user=newcomer, org=org, role="member")
                record_event(action="test.joiner", org=org, actor=SYSTEM)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        held = pool.submit(holder)
        joined = pool.submit(joiner)
        assert row_locked.wait(WAIT)
        while not joiner_pid:
            assert not joined.done(), joined.exception()
        _wait_until_blocked_on_a_lock(joiner_pid[0])
        may_record.set()
        held.result(timeout=WAIT)  # a deadlock would raise here or in the joiner
        joined.result(timeout=WAIT)

    assert verify_chain(chain_key(org.id)).ok
