from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from credentials import checks  # noqa: F401 - registers the system checks
        from credentials.crypto import KEYRING_SETTINGS, reset_keyring

        def _reset(*, setting: str, **kwargs: object) -> None:
            if setting in KEYRING_SETTINGS:
                reset_keyring()

        setting_changed.connect(_reset, weak=False)
