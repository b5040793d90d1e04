"""`manage.py check_soc_drift`: re-plan the controlled sites whose SOC left their plan."""

import json

from django.core.management.base import BaseCommand

from enexa.optimizer.services import check_drift


class Command(BaseCommand):
    help = (
        "Enqueue a soc_drift re-plan (for the worker) of every controlled site whose newest SOC "
        "lies more than ENEXA_OPTIMIZER_SOC_DRIFT_PCT from its plan in force; prints their codes."
    )

    def handle(self, *args, **options):
        self.stdout.write(json.dumps(check_drift()))
