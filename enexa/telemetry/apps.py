"""Django app configuration of enexa.telemetry."""

from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "enexa.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry"
