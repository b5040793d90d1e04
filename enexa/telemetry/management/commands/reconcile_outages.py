"""`manage.py reconcile_outages`: recompute the outage reports (expected vs received)."""

from django.core.management.base import BaseCommand

from enexa.telemetry.services import reconcile_outages


class Command(BaseCommand):
    help = "Recompute the reconciliation report of every outage within the raw retention."

    def handle(self, *args, **options):
        self.stdout.write(f"reconciled {reconcile_outages()} outage report(s)")
