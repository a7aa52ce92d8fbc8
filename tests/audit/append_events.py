"""A separate writer process for tests/audit/test_concurrent_writers.py.

    python -m tests.audit.append_events ORG_ID COUNT   (DATABASE_URL: the test database)

Prints "ready" once Django is set up, waits for a line on stdin, then appends COUNT events to
the org's chain, one transaction each, like a web or worker process would.
"""

from __future__ import annotations

import os
import sys


def main(org_id: str, count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from audit.services import Actor, record_event
    from orgs.models import Organization

    org = Organization.objects.get(id=org_id)
    actor = Actor("worker", str(os.getpid()), "append_events")
    print("ready", flush=True)
    sys.stdin.readline()
    for number in range(count):
        record_event(action="test.process", org=org, actor=actor, metadata={"n": number})
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
