"""Django app configuration of enexa.audit."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "enexa.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from .signals import connect

        connect()
