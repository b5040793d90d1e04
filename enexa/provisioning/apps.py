"""Django app configuration of enexa.provisioning."""

from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "enexa.provisioning"
    label = "provisioning"
    verbose_name = "Provisioning"
