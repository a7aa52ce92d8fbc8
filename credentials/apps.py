from typing import Any

from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from credentials import checks  # noqa: F401 - registers the system checks
        from credentials.crypto import KEYRING_SETTINGS, reset_keyring
        from orgs.signals import membership_removed

        def _reset(*, setting: str, **kwargs: object) -> None:
            if setting in KEYRING_SETTINGS:
                reset_keyring()

        setting_changed.connect(_reset, weak=False)
        membership_removed.connect(_revoke_grants_of_former_member, weak=False)


def _revoke_grants_of_former_member(*, org: Any, user: Any, actor: Any, **kwargs: Any) -> None:
    from credentials.services import credential_grants_revoke_for_member

    credential_grants_revoke_for_member(org=org, user=user, actor=actor)
