"""`manage.py prune_audit_log [--days N]`: drop audit entries past the retention period."""

from django.core.management.base import BaseCommand

from enexa.audit.services import prune_audit_entries


class Command(BaseCommand):
    help = "Delete audit entries older than --days (default ENEXA_AUDIT_RETENTION_DAYS)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, days: int | None, **options):
        self.stdout.write(f"Deleted {prune_audit_entries(days)} audit entries.")
