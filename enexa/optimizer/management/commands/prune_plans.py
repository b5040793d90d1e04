"""`manage.py prune_plans`: delete plans past their retention, each site's newest kept."""

from django.core.management.base import BaseCommand

from enexa.optimizer.services import prune_plans


class Command(BaseCommand):
    help = "Apply ENEXA_OPTIMIZER_PLAN_RETENTION_DAYS (each site's newest plan is kept)."

    def handle(self, *args, **options):
        self.stdout.write(f"plans deleted: {prune_plans()}")
