"""Django app configuration of enexa.provisioning."""

from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "enexa.provisioning"
    label = "provisioning"
    verbose_name = "Provisioning"

    def ready(self) -> None:
        from . import keycache

        # Every write to what the API-key lookup reads moves the cache's generation on.
        keycache.connect()
