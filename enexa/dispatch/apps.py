"""Django app configuration of enexa.dispatch."""

from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "enexa.dispatch"
    label = "dispatch"
    verbose_name = "Dispatch"
