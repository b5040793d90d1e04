"""`manage.py send_due_webhooks`: enqueue the webhook deliveries whose next attempt is due."""

from django.core.management.base import BaseCommand

from enexa.webhooks.services import send_due


class Command(BaseCommand):
    help = (
        "Enqueue every pending webhook delivery whose next attempt is due, for the Enexa "
        "worker (beat does this every 30 s)."
    )

    def handle(self, *args, **options):
        self.stdout.write(f"enqueued {send_due()}")
