"""`manage.py evaluate_alerts`: run the alert rules now, as the worker does periodically."""

from django.core.management.base import BaseCommand

from enexa.alerts.rules import RULES
from enexa.alerts.services import evaluate


class Command(BaseCommand):
    help = "Evaluate the alert rules over every site (the Enexa worker does this every 30 s)."

    def add_arguments(self, parser):
        parser.add_argument("--rule", action="append", choices=sorted(RULES), dest="rules")

    def handle(self, *args, **options):
        counts = evaluate(rules=options["rules"])
        self.stdout.write(
            f"opened {counts['opened']}, updated {counts['updated']}, resolved {counts['resolved']}"
        )
