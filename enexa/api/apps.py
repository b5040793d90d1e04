"""Django app configuration of enexa.api."""

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "enexa.api"
    label = "enexa_api"
    verbose_name = "API plumbing"

    def ready(self):
        from . import schema  # noqa: F401 - registers the OpenAPI authentication extensions
