"""Django app configuration of enexa.alerts."""

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "enexa.alerts"
    label = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the receivers
