"""Django app configuration of enexa.firmware."""

from django.apps import AppConfig


class FirmwareConfig(AppConfig):
    name = "enexa.firmware"
    label = "firmware"
    verbose_name = "Firmware"
