"""config.statements: ORM-compiled writes sent several to a round trip.

Each behaviour is checked both ways the module works: batched (PostgreSQL, client-side
binding: one `execute` carries several statements) and one statement per call (SQLite, or
PostgreSQL with `server_side_binding`, simulated here by the setting `batches` reads).
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from config import statements
from orgs.models import Organization
from tests.audit.tamper import on_postgresql, postgresql_only
from tests.pg_trace import protocol_trace

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["batched", "one per call"])
def mode(request, monkeypatch):
    if request.param == "one per call" and on_postgresql():
        options = dict(connection.settings_dict.get("OPTIONS", {}))
        options["server_side_binding"] = True  # what makes PostgreSQL take one per call
        monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
        assert not statements.batches(connection)
    elif request.param == "batched" and not on_postgresql():
        pytest.skip("SQLite takes one statement per call")
    return request.param


def _rename(org: Organization, name: str) -> statements.Statement:
    return statements.update(Organization.objects.filter(pk=org.pk), name=name)


def _name(org: Organization) -> str:
    return Organization.objects.values_list("name", flat=True).get(pk=org.pk)


def test_update_is_what_queryset_update_would_send(personas, mode):
    with connection.cursor() as cursor:
        assert statements.execute(cursor, [_rename(personas.org, "Renamed")]) == [1]
    assert _name(personas.org) == "Renamed"


def test_a_filter_that_matches_nothing_by_construction_is_refused():
    with pytest.raises(EmptyResultSet):
        statements.update(Organization.objects.filter(pk__in=[]), name="never")


def test_insert_fills_defaults_as_save_would(mode):
    org = Organization(slug="inserted", name="Inserted")
    statement = statements.insert(org)
    assert org.created_at is not None  # auto_now_add, filled in by compiling
    with transaction.atomic(), connection.cursor() as cursor:
        assert statements.execute(cursor, [statement]) == [1]
    statements.saved(org)
    assert not org._state.adding
    assert Organization.objects.get(pk=org.pk).created_at == org.created_at


def test_insert_of_a_key_the_database_makes_returns_it(mode):
    group = Group(name="inserted-group")
    with transaction.atomic(), connection.cursor() as cursor:
        statements.execute(cursor, [_rename_nothing(), statements.insert(group)])
        statements.saved(group, cursor=cursor)
    assert group.pk == Group.objects.get(name="inserted-group").pk


def _rename_nothing() -> statements.Statement:
    return statements.update(Organization.objects.filter(pk=uuid.uuid4()), name="nobody")


def test_execute_runs_in_order_and_counts_rows_of_each(personas, mode):
    org = personas.org
    with transaction.atomic(), connection.cursor() as cursor:
        counts = statements.execute(
            cursor,
            [
                _rename(org, "First"),
                # Sees the first one's change: it matches only once that has run.
                statements.update(Organization.objects.filter(name="First"), name="Second"),
                _rename_nothing(),
            ],
        )
    assert counts == [1, 1, 0]
    assert _name(org) == "Second"


@postgresql_only
def test_batched_they_are_one_call(personas):
    with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
        statements.execute(cursor, [_rename(personas.org, "A"), _rename(personas.org, "B")])
    assert len(captured) == 1
    assert _name(personas.org) == "B"


def test_sent_with_next_takes_effect_before_the_block_reads(personas, mode):
    with transaction.atomic():
        with statements.sent_with_next([_rename(personas.org, "Before")]) as counts:
            assert _name(personas.org) == "Before"
        assert counts == [1]


@postgresql_only
@pytest.mark.django_db(transaction=True)  # so that atomic() is a transaction, not a savepoint
def test_batched_they_travel_in_the_first_statement_of_the_block(personas):
    with (
        protocol_trace(connection) as wire,
        transaction.atomic(),
        statements.sent_with_next([_rename(personas.org, "Sent")]),
    ):
        assert _name(personas.org) == "Sent"
        assert _name(personas.other_org) == personas.other_org.name
    assert len(wire.queries) == 3  # the two reads, then COMMIT
    assert wire.queries[0].startswith('BEGIN; UPDATE "orgs_organization"')
    assert "; SELECT" in wire.queries[0]
    assert wire.queries[1].startswith("SELECT")
    assert wire.round_trips == 3


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_sent_by_commit_they_travel_with_the_commit(personas):
    with protocol_trace(connection) as wire, transaction.atomic():
        assert _name(personas.org) == personas.org.name
        statements.sent_by_commit([_rename(personas.org, "At commit")])
    assert wire.round_trips == 2
    assert wire.queries[-1].startswith('UPDATE "orgs_organization"')
    assert wire.queries[-1].endswith("; COMMIT")
    assert _name(personas.org) == "At commit"


def test_sent_by_commit_takes_effect_before_the_next_statement(personas, mode):
    with transaction.atomic():
        statements.sent_by_commit([_rename(personas.org, "First")])
        statements.sent_by_commit(
            [statements.update(Organization.objects.filter(name="First"), name="Second")]
        )
        assert _name(personas.org) == "Second"  # both ran, in order, before this read
        statements.sent_by_commit([_rename(personas.org, "Third")])
    assert _name(personas.org) == "Third"


def test_sent_by_commit_is_undone_by_a_rollback(personas, mode):
    with transaction.atomic():
        statements.sent_by_commit([_rename(personas.org, "Rolled back")])
        transaction.set_rollback(True)
    assert _name(personas.org) == personas.org.name
    with transaction.atomic():
        with transaction.atomic():  # a savepoint, rolled back
            statements.sent_by_commit([_rename(personas.org, "Undone")])
            transaction.set_rollback(True)
        assert _name(personas.org) == personas.org.name
    assert _name(personas.org) == personas.org.name


def test_sent_by_commit_with_no_other_statement_opens_and_commits(personas, mode):
    with transaction.atomic():
        statements.sent_by_commit([_rename(personas.org, "Alone")])
    assert _name(personas.org) == "Alone"


def test_an_error_in_a_write_sent_by_commit_fails_the_commit(personas, mode):
    taken = statements.update(
        Organization.objects.filter(pk=personas.org.pk), slug=personas.other_org.slug
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        statements.sent_by_commit([_rename(personas.org, "Half"), taken])
    org = Organization.objects.get(pk=personas.org.pk)
    assert (org.name, org.slug) == (personas.org.name, personas.org.slug)
    with transaction.atomic():  # and the connection goes on
        statements.sent_by_commit([_rename(personas.org, "After")])
    assert _name(personas.org) == "After"


def test_sent_by_commit_outside_a_transaction_is_executed_now(personas, mode):
    statements.sent_by_commit([_rename(personas.org, "Now")])
    assert _name(personas.org) == "Now"


def test_sent_with_next_and_by_commit_keep_the_order_they_were_queued_in(personas, mode):
    with transaction.atomic():
        with statements.sent_with_next([_rename(personas.org, "one")]) as counts:
            statements.sent_by_commit(
                [statements.update(Organization.objects.filter(name="one"), name="two")]
            )
        assert counts == [1]
        with statements.sent_with_next(
            [statements.update(Organization.objects.filter(name="two"), name="three")]
        ) as later:
            assert _name(personas.org) == "three"
        assert later == [1]


def test_a_block_that_runs_no_statement_still_sends_them(personas, mode):
    with transaction.atomic():
        with statements.sent_with_next([_rename(personas.org, "Quiet")]) as counts:
            pass
        assert counts == [1]
    assert _name(personas.org) == "Quiet"


def test_a_block_that_fails_leaves_nothing_behind(personas, mode):
    with (
        pytest.raises(RuntimeError),
        transaction.atomic(),
        statements.sent_with_next([_rename(personas.org, "Never")]),
    ):
        raise RuntimeError("before any statement")
    assert _name(personas.org) == personas.org.name


def test_an_error_in_a_sent_statement_fails_the_transaction(personas, mode):
    taken = statements.update(
        Organization.objects.filter(pk=personas.org.pk), slug=personas.other_org.slug
    )
    with (
        pytest.raises(IntegrityError),
        transaction.atomic(),
        statements.sent_with_next([_rename(personas.org, "Half"), taken]),
    ):
        _name(personas.org)
    org = Organization.objects.get(pk=personas.org.pk)
    assert (org.name, org.slug) == (personas.org.name, personas.org.slug)


def test_a_literal_percent_in_the_block_is_not_taken_for_a_placeholder(personas, mode):
    with (
        transaction.atomic(),
        statements.sent_with_next([_rename(personas.org, "Pct")]),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT '100%'")
        assert cursor.fetchone() == ("100%",)
    assert _name(personas.org) == "Pct"


def test_nested_blocks_send_in_the_order_they_were_entered(personas, mode):
    with (
        transaction.atomic(),
        statements.sent_with_next([_rename(personas.org, "outer, first")]) as outer,
        statements.sent_with_next([_rename(personas.org, "inner, second")]) as inner,
    ):
        assert _name(personas.org) == "inner, second"
    assert (outer, inner) == ([1], [1])


def test_a_failed_inner_block_sends_nothing_of_its_own(personas, mode):
    with transaction.atomic(), statements.sent_with_next([_rename(personas.org, "outer")]):
        with (
            pytest.raises(RuntimeError),
            statements.sent_with_next([_rename(personas.other_org, "never")]),
        ):
            raise RuntimeError("before any statement")
        _name(personas.org)
    if mode == "batched":  # executed on entry otherwise: kept, as by any write before an error
        assert _name(personas.other_org) == personas.other_org.name
    assert _name(personas.org) == "outer"


def test_named_parameters_in_the_block(personas, mode):
    with (
        transaction.atomic(),
        statements.sent_with_next([_rename(personas.org, "Named")]),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT %(one)s", {"one": 1})
        assert cursor.fetchone() == (1,)
    assert _name(personas.org) == "Named"


def test_a_statement_that_never_left_keeps_the_writes_due(personas, mode):
    # A parameter psycopg cannot send fails before anything reaches the server: the writes
    # that were to travel with it are not lost, whoever catches the error.
    with (
        transaction.atomic(),
        statements.sent_with_next([_rename(personas.org, "Still due")]) as counts,
        pytest.raises(Exception),  # noqa: B017, PT011 - psycopg's "cannot adapt"
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT %s", [object()])  # type: ignore[list-item]
    assert counts == [1]
    assert _name(personas.org) == "Still due"
