"""Django app configuration of enexa.api."""
from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "enexa.api"
    label = "enexa_api"
    verbose_name = "API plumbing"
