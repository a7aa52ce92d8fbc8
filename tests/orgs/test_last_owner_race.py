"""The last owner stays even when demotions race: two owners demoting each other at the same
moment (or one owner demoting both at once) leave exactly one owner, and the loser gets the
400 that says why, on PostgreSQL as on SQLite."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django_prometheus.middleware import Metrics
from rest_framework.test import APIClient

from orgs.models import Membership, Role
from orgs.services import LAST_OWNER, ONLY_OWNERS, membership_set

pytestmark = pytest.mark.django_db(transaction=True)


def _race(requests: list[tuple[object, str]]) -> list[tuple[int, dict]]:
    """PATCH each (acting user, target username) to member, all released at once."""
    barrier = threading.Barrier(len(requests))
    answers: list[tuple[int, dict]] = []
    # Each client builds its own handler, and django-prometheus creates its metrics singleton
    # on the first one without a lock: two first handlers at once would both register them.
    Metrics.get_instance()

    def demote(actor, username: str) -> None:
        client = APIClient()
        client.force_authenticate(actor)
        try:
            barrier.wait(timeout=10)
            response = client.patch(
                f"/api/orgs/acme/members/{username}/", {"role": "member"}, format="json"
            )
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()  # each thread's own connection

    threads = [threading.Thread(target=demote, args=request) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == len(requests), "a request raised instead of answering"
    return answers


@pytest.mark.parametrize("who_demotes", ["each other", "one owner both"])
def test_racing_demotions_never_leave_an_organisation_without_an_owner(personas, who_demotes):
    p = personas
    membership_set(org=p.org, user=p.admin, role=Role.OWNER)  # two owners: owner and admin
    if who_demotes == "each other":
        requests = [(p.owner, "admin"), (p.admin, "owner")]
    else:
        requests = [(p.owner, "owner"), (p.owner, "admin")]

    answers = _race(requests)

    owners = Membership.objects.filter(org=p.org, role=Role.OWNER).count()
    assert owners == 1, answers
    statuses = sorted(status for status, _ in answers)
    refused = next(body for status, body in answers if status != 200)
    if who_demotes == "each other" and statuses == [200, 403]:
        # The other demotion committed first: the second requester is no longer an owner
        # when their request is authorised, so they may not touch the owner role at all.
        assert refused == {"detail": ONLY_OWNERS}
    else:
        assert statuses == [200, 400], answers
        assert refused == {"role": [LAST_OWNER]}
