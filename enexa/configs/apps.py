"""Django app configuration of enexa.configs."""

from django.apps import AppConfig


class ConfigsConfig(AppConfig):
    name = "enexa.configs"
    label = "configs"
    verbose_name = "Configuration"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the receivers
