"""Django app configuration of enexa.webhooks."""

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "enexa.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the receivers
