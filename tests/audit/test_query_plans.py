"""On PostgreSQL, with a realistic trail (60,000 events over three orgs, statistics
collected), every query the audit API and page run, for every combination of filters and
cursors they offer, is answered from an index: no sequential scan of the audit table, and an
index of one of the filtered columns whenever there is a filter."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import pytest
from django.db import connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from audit.selectors import FILTERS, audit_event_page
from orgs.models import Organization
from tests.audit.tamper import postgresql_only

pytestmark = [pytest.mark.django_db, postgresql_only]

ROWS = {"acme": 40_000, "globex": 10_000, "deleted": 10_000}
VALUES = {
    "action": "credential.decrypt",
    "actor_type": "agent",
    "actor_id": "u7",
    "actor_label": "user-7",
    "target_id": "cred-7",
    "request_id": "req-7",
    "job_id": "job-7",
}
INDEX_OF = {
    "action": "audit_org_action",
    "actor_type": "audit_org_actor_type",
    "actor_id": "audit_org_actor_id",
    "actor_label": "audit_org_actor_label",
    "target_id": "audit_org_target",
    "request_id": "audit_org_request",
    "job_id": "audit_org_job",
}
FILL = """
INSERT INTO audit_auditevent (
    occurred_at, org_id, sequence, actor_type, actor_id, actor_label, action, target_type,
    target_id, target_label, outcome, request_id, job_id, ip, user_agent, metadata,
    hash_format, prev_hash, hash)
SELECT now() - make_interval(secs => %(count)s - i), %(org)s, %(after)s + i,
    (ARRAY['user', 'agent', 'agent', 'worker', 'system'])[1 + i %% 5],
    'u' || (i %% 200), 'user-' || (i %% 200),
    (ARRAY['credential.decrypt', 'credential.decrypt', 'credential.decrypt', 'agent_run.queue',
           'agent_run.finish', 'credential.create', 'credential.replace', 'credential.update',
           'credential.delete', 'agent.create', 'auth.login', 'credential.decrypt_failed'])
        [1 + i %% 12],
    'credential', 'cred-' || (i %% 2000), 'name', 'success', 'req-' || (i / 3),
    CASE WHEN i %% 2 = 0 THEN 'job-' || (i / 4) ELSE '' END,
    '192.0.2.1', 'pytest', '{"key_id": "local:v1"}', 1, md5(i::text) || md5(i::text),
    md5((i + 1)::text) || md5((i + 1)::text)
FROM generate_series(1, %(count)s) AS i
"""


@dataclass
class Trail:
    org: Organization
    filled_after: int  # the filler's events follow the setup's own in acme's chain


@pytest.fixture
def realistic_trail(personas) -> Trail:
    orgs = {"acme": personas.org.id, "globex": personas.other_org.id, "deleted": uuid.uuid4()}
    after = {
        name: AuditEvent.objects.filter(org_id=org_id).aggregate(last=Max("sequence"))["last"] or 0
        for name, org_id in orgs.items()
    }
    with connection.cursor() as cursor:
        for name, count in ROWS.items():
            cursor.execute(FILL, {"org": orgs[name], "count": count, "after": after[name]})
        cursor.execute("ANALYZE audit_auditevent")
    return Trail(org=personas.org, filled_after=after["acme"])


def _plans(sqls: list[str]) -> list[str]:
    plans = []
    with connection.cursor() as cursor:
        for sql in sqls:
            cursor.execute(f"EXPLAIN {sql}")
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


def test_every_filter_combination_and_cursor_is_served_by_an_index(realistic_trail):
    checked = 0
    combinations = itertools.chain.from_iterable(
        itertools.combinations(FILTERS, size) for size in range(len(FILTERS) + 1)
    )
    for names in combinations:
        filters = {name: VALUES[name] for name in names}
        for cursor in ({}, {"before": 20_000}, {"after": 20_000}):
            with CaptureQueriesContext(connection) as captured:
                audit_event_page(org=realistic_trail.org, filters=filters, **cursor)
            trail_queries = [q["sql"] for q in captured if "audit_auditevent" in q["sql"]]
            assert trail_queries, (filters, cursor)
            for sql, plan in zip(trail_queries, _plans(trail_queries), strict=True):
                where = f"{filters} {cursor}:\n{sql}\n{plan}"
                assert "Seq Scan" not in plan, where
                if names:
                    assert any(INDEX_OF[name] in plan for name in names), where
                else:
                    assert "audit_sequence_in_chain" in plan, where
                checked += 1
    assert checked >= 2 ** len(FILTERS) * 3


def test_a_page_deep_in_the_trail_reads_one_page_of_index_entries(realistic_trail):
    start = realistic_trail.filled_after
    with CaptureQueriesContext(connection) as captured:
        page = audit_event_page(
            org=realistic_trail.org, filters={"action": "auth.login"}, before=start + 100
        )
    main_query = captured[0]["sql"]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {main_query}")
        (plan,) = cursor.fetchone()[0]

    assert [event.sequence - start for event in page.events] == [94, 82, 70, 58, 46, 34, 22, 10]
    # An index scan or a bitmap of one (the planner may take either for 8 rows): either way
    # the cursor is in the index condition, so only the 8 entries of the page are read.
    (scan,) = [node for node in _nodes(plan["Plan"]) if "Index Name" in node]
    assert scan["Index Name"] == "audit_org_action"
    assert f"sequence < {start + 100}" in scan["Index Cond"]
    assert scan["Actual Rows"] == 8


def _nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in _nodes(child))]
