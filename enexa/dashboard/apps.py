"""Django app configuration of enexa.dashboard."""

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "enexa.dashboard"
    label = "dashboard"
    verbose_name = "Operator dashboard"
