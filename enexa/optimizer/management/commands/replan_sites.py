"""`manage.py replan_sites`: re-plan, here and now, every controlled site that is due."""

from django.core.management.base import BaseCommand

from enexa.optimizer.choices import PlanReason
from enexa.optimizer.services import replan_fleet


class Command(BaseCommand):
    help = "Re-plan every site under the optimizer's control whose plan is due (in this process)."

    def handle(self, *args, **options):
        counts = replan_fleet(PlanReason.SCHEDULED)
        self.stdout.write(f"planned {counts['planned']}, skipped {counts['skipped']}")
