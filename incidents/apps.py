from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """The breach playbook: orchestrates each app's containment service (DESIGN.md), so it
    sits at the top of the dependency graph and nothing imports it."""

    name = "incidents"
