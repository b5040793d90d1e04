"""`manage.py create_telemetry_partitions`: the readings' daily partitions from yesterday to
AHEAD_DAYS ahead, as the worker creates them every hour (PostgreSQL; nothing on SQLite)."""

from django.core.management.base import BaseCommand

from enexa.telemetry.partitions import AHEAD_DAYS, create_ahead, existing_days, is_partitioned


class Command(BaseCommand):
    help = f"Create the readings' daily partitions up to {AHEAD_DAYS} days ahead (PostgreSQL)."

    def handle(self, *args, **options):
        if not is_partitioned():
            self.stdout.write("This database keeps readings in one table: nothing to create.")
            return
        created = create_ahead()
        days = sorted(existing_days())
        self.stdout.write(
            f"created: {', '.join(d.isoformat() for d in created) or 'none'}; "
            f"{len(days)} days partitioned, {days[0]} to {days[-1]}"
        )
