"""`manage.py redeliver_commands`: retry undelivered commands, expire the stale ones."""

from django.core.management.base import BaseCommand

from enexa.dispatch.services import redeliver_undelivered


class Command(BaseCommand):
    help = (
        "Deliver every still-valid undelivered command to Amperio (oldest first) and expire "
        "those past valid_until; the Enexa worker does this periodically (beat)."
    )

    def handle(self, *args, **options):
        counts = redeliver_undelivered()
        self.stdout.write(
            f"delivered {counts['delivered']}, expired {counts['expired']}, "
            f"still undelivered {counts['still_undelivered']}"
        )
