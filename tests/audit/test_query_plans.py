"""On PostgreSQL, with a realistic trail (60,000 events over three orgs, statistics
collected), every query the audit API and page run, for every combination of filters and
cursors they offer, is answered from an index and reads a page's worth of rows, not the trail:
no sequential scan of the audit table, at most ROWS_READ rows looked at per query (EXPLAIN
ANALYZE counts them: a deterministic figure for fixed data, not a timing), and each selective
filter on its own served by its own index."""

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
    "action": "audit_action",
    "actor_type": "audit_actor_type",
    "actor_id": "audit_actor_id",
    "actor_label": "audit_actor_label",
    "target_id": "audit_target",
    "request_id": "audit_request",
    "job_id": "audit_job",
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


# A page is 51 rows; for a filter matching a quarter of the trail the planner may walk the
# chain's own index and skip the rest (~200 rows), which is as fast. A plan that reads the org's
# 40,000 events would fail this by far.
ROWS_READ = 2_000
SELECTIVE = ("actor_id", "actor_label", "target_id", "request_id", "job_id")


def _analyze(sql: str) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        (plan,) = cursor.fetchone()[0]
    return plan["Plan"]


def _nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in _nodes(child))]


def _rows_read(plan: dict) -> int:
    return sum(
        node["Actual Rows"] * node["Actual Loops"]
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
        for node in _nodes(plan)
        if node.get("Relation Name") == "audit_auditevent"
    )


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
            for sql in trail_queries:
                plan = _analyze(sql)
                nodes = _nodes(plan)
                where = f"{filters} {cursor}:\n{sql}\n{plan}"
                assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], where
                assert [n for n in nodes if "Index Name" in n], where
                assert _rows_read(plan) <= ROWS_READ, where
                if len(names) == 1 and names[0] in SELECTIVE:
                    assert INDEX_OF[names[0]] in {n.get("Index Name") for n in nodes}, where
                checked += 1
    assert checked >= 2 ** len(FILTERS) * 3


def test_a_page_deep_in_the_trail_reads_one_page_of_index_entries(realistic_trail):
    start = realistic_trail.filled_after
    with CaptureQueriesContext(connection) as captured:
        page = audit_event_page(
            org=realistic_trail.org, filters={"action": "auth.login"}, before=start + 100
        )
    plan = _analyze(captured[0]["sql"])

    assert [event.sequence - start for event in page.events] == [94, 82, 70, 58, 46, 34, 22, 10]
    # An index scan or a bitmap of one (the planner may take either for 8 rows): either way
    # the cursor is in the index condition, so only the 8 entries of the page are read.
    (scan,) = [node for node in _nodes(plan) if "Index Name" in node]
    assert scan["Index Name"] == "audit_action"
    assert f"sequence < {start + 100}" in scan["Index Cond"]
    assert scan["Actual Rows"] == 8
