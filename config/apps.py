from django.apps import AppConfig


class ConfigAppConfig(AppConfig):
    """Registers project-wide system checks (config.startup)."""

    name = "config"
    label = "everesthood_config"

    def ready(self) -> None:
        from config import startup  # noqa: F401 - registers the checks
