"""PostgreSQL: the database itself refuses to change or remove audit events.

One statement-level trigger rejects every UPDATE and DELETE on the table (even one that would
match no row) and a TRUNCATE of a table that holds events. The application role cannot get
around it; the table's owner or a superuser can (ALTER TABLE ... DISABLE TRIGGER,
session_replication_role), and the hash chain is what catches that (docs/audit.md).

A TRUNCATE of an empty table is let through so that Django's test flush, which truncates every
table, works after the tests empty this one with the trigger bypassed (tests/conftest.py).
SQLite has no equivalent worth having: whoever can open the file can rewrite it.
"""

from django.db import migrations

CREATE = """
CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND NOT EXISTS (SELECT 1 FROM audit_auditevent) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The audit trail can only grow; see docs/audit.md.';
END
$$;
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0002_hash_chain"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP)),
    ]
