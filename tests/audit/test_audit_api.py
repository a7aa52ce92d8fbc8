"""GET /api/orgs/{org}/audit/: every filter the issue names, keyset pages, clear 400s."""

from __future__ import annotations

import pytest

from audit.models import ActorType
from audit.services import Actor, Target, record_event
from config import context

pytestmark = pytest.mark.django_db

URL = "/api/orgs/acme/audit/"
ALICE = Actor(ActorType.USER, "alice-7", "alice")
FETCHER = Actor(ActorType.AGENT, "agent-1", "fetcher")
CREATE_1 = ("credential.create", "cred-1")
DECRYPT_1 = ("credential.decrypt", "cred-1")
DECRYPT_2 = ("credential.decrypt", "cred-2")


@pytest.fixture
def trail(personas):
    with context.bound(request_id="req-api-000001"):
        record_event(
            action="credential.create",
            org=personas.org,
            actor=ALICE,
            target=Target("credential", "cred-1", "billing"),
        )
    with context.bound(request_id="req-api-000002", job_id="job-42"):
        record_event(
            action="credential.decrypt",
            org=personas.org,
            actor=FETCHER,
            target=Target("credential", "cred-1", "billing"),
        )
        record_event(
            action="credential.decrypt",
            org=personas.org,
            actor=FETCHER,
            target=Target("credential", "cred-2", "mail"),
        )
    # The same values in another org never show up in acme's trail.
    with context.bound(request_id="req-api-000001", job_id="job-42"):
        record_event(
            action="credential.decrypt",
            org=personas.other_org,
            actor=FETCHER,
            target=Target("credential", "cred-1", "billing"),
        )


def _actions_and_targets(response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.content
    return [(e["action"], e["target_id"]) for e in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, [DECRYPT_2, DECRYPT_1, CREATE_1]),
        ({"action": "credential.create"}, [CREATE_1]),
        ({"actor_type": "agent"}, [DECRYPT_2, DECRYPT_1]),
        ({"actor_id": "alice-7"}, [CREATE_1]),
        ({"actor_label": "fetcher", "target_id": "cred-2"}, [DECRYPT_2]),
        ({"target_id": "cred-1"}, [DECRYPT_1, CREATE_1]),
        ({"request_id": "req-api-000001"}, [CREATE_1]),
        ({"job_id": "job-42", "action": "credential.decrypt"}, [DECRYPT_2, DECRYPT_1]),
        ({"job_id": "job-42", "actor_type": "user"}, []),
    ],
)  # fmt: skip
def test_each_filter_matches_exactly_and_stays_in_the_org(
    personas, api_for, trail, query, expected
):
    response = api_for(personas.auditor).get(URL, query)

    found = _actions_and_targets(response)
    if query:
        assert found == expected
    else:  # newest first: ours, then the setup's own events
        assert found[: len(expected)] == expected


def test_events_carry_their_chain_position_and_hashes(personas, api_for, trail):
    first, second = api_for(personas.auditor).get(URL, {"limit": 2}).json()["results"]

    assert first["sequence"] == second["sequence"] + 1
    assert first["prev_hash"] == second["hash"]
    assert len(first["hash"]) == 64


def test_pages_follow_next_and_previous_links_on_the_sequence(personas, api_for):
    for number in range(7):
        record_event(action=f"test.{number}", org=personas.org, actor=ALICE)
    client = api_for(personas.auditor)

    first = client.get(URL, {"limit": 3, "actor_id": ALICE.id}).json()
    second = client.get(first["next"]).json()
    third = client.get(second["next"]).json()
    back = client.get(third["previous"]).json()

    def actions(page):
        return [e["action"] for e in page["results"]]

    def sequences(page):
        return [e["sequence"] for e in page["results"]]

    assert actions(first) == ["test.6", "test.5", "test.4"]
    assert first["previous"] is None
    assert f"before={sequences(first)[-1]}" in first["next"]
    assert f"actor_id={ALICE.id}" in first["next"]
    assert "limit=3" in first["next"]
    assert actions(second) == ["test.3", "test.2", "test.1"]
    assert actions(third) == ["test.0"]
    assert third["next"] is None
    assert f"after={sequences(third)[0]}" in third["previous"]
    assert actions(back) == ["test.3", "test.2", "test.1"]


def test_bad_filters_and_cursors_are_400s_with_field_errors_that_do_not_echo(
    personas, api_for, canary
):
    client = api_for(personas.auditor)

    overlong = client.get(URL, {"action": "a" * 65})
    unknown_type = client.get(URL, {"actor_type": canary})
    both = client.get(URL, {"before": 5, "after": 2})
    not_a_number = client.get(URL, {"before": "x", "limit": 1000})

    assert overlong.status_code == 400
    assert "action" in overlong.json()
    assert unknown_type.status_code == 400
    assert unknown_type.json() == {"actor_type": ["Not a known actor type."]}
    assert canary not in unknown_type.content.decode()
    assert both.status_code == 400
    assert set(not_a_number.json()) == {"before", "limit"}


def test_only_trail_readers_see_it_and_strangers_get_404(personas, api_for, trail):
    assert api_for(personas.admin).get(URL).status_code == 200
    assert api_for(personas.owner).get(URL).status_code == 200
    assert api_for(personas.member).get(URL).status_code == 403
    assert api_for(personas.outsider).get(URL).status_code == 404
