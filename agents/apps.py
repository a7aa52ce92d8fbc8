from typing import Any

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from agents import schema  # noqa: F401 - registers the OpenAPI auth extension
        from orgs.signals import membership_removed

        membership_removed.connect(_revoke_tokens_of_former_member, weak=False)


def _revoke_tokens_of_former_member(*, org: Any, user: Any, actor: Any, **kwargs: Any) -> None:
    from agents.services import agent_tokens_revoke_issued_by

    agent_tokens_revoke_issued_by(org=org, user=user, actor=actor)
