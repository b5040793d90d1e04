"""`manage.py prune_telemetry`: drop raw days past retention (their hourly aggregates stay),
then aggregates past theirs."""

from django.core.management.base import BaseCommand

from enexa.telemetry.queries import prune_telemetry


class Command(BaseCommand):
    help = "Apply ENEXA_TELEMETRY_RAW_RETENTION_DAYS and ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS."

    def handle(self, *args, **options):
        counts = prune_telemetry()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
