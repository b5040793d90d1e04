"""Django app configuration of enexa.registry."""

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "enexa.registry"
    label = "registry"
    verbose_name = "Asset registry"
