"""`manage.py detect_offline`: mark sites silent past ENEXA_OFFLINE_AFTER_S offline."""

from django.core.management.base import BaseCommand

from enexa.telemetry.services import mark_offline_sites


class Command(BaseCommand):
    help = "Mark offline every site silent for longer than ENEXA_OFFLINE_AFTER_S."

    def add_arguments(self, parser):
        parser.add_argument("--silence-s", type=float, default=None)

    def handle(self, *args, silence_s=None, **options):
        went = mark_offline_sites(silence_s=silence_s)
        self.stdout.write(f"offline now: {', '.join(went) if went else 'none'}")
