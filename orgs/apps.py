from typing import Any

from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "orgs"
    verbose_name = "Organisations"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_sync_role_groups, sender=self, weak=False)


def _sync_role_groups(**kwargs: Any) -> None:
    # A changed permission matrix arrives as a migration (Organization.Meta.permissions);
    # carry it into every organisation's role groups on the same migrate.
    from orgs.services import role_groups_sync_all

    role_groups_sync_all()
