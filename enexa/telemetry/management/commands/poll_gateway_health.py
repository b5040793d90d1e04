"""`manage.py poll_gateway_health`: every site's gateway health from Amperio, stored now."""

from django.core.management.base import BaseCommand

from enexa.telemetry.services import poll_gateway_health


class Command(BaseCommand):
    help = "Ask Amperio's GET /v1/health and store each site's gateway health."

    def handle(self, *args, **options):
        done = poll_gateway_health()
        self.stdout.write(f"gateway health: {done['result']}, {done['sites']} sites recorded")
