"""Daily partitions of the reading tables on PostgreSQL: created ahead by the worker (and on
demand for a backfilled day that has none), dropped whole by retention. SQLite keeps one table
per model and none of this applies there.

Daily, not weekly: retention then moves in steps of a day, a fleet of 1,000 sites at 1 s fills
about 86 M readings a day (a week would be 600 M rows per partition, slow to drop and to index),
and 30 to 90 daily partitions are few enough for the planner to prune cheaply."""

# SQL here interpolates only table names and dates built in code; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

READINGS = "telemetry_telemetryreading"
UNITS = "telemetry_batteryunitvalue"
CHARGERS = "telemetry_chargervalue"
# Each partitioned table and the unique index every one of its partitions carries. These
# cannot be declared on the parent, since a unique index there must hold the partition key:
# within a day (site, message_id) and (reading, unit or charger) stay unique as on SQLite.
PARTITIONED = {
    READINGS: "(site_id, message_id) WHERE message_id IS NOT NULL",
    UNITS: "(reading_id, unit_code)",
    CHARGERS: "(reading_id, charger_code)",
}
# Days created ahead of today, so a day's first reading never waits on DDL.
AHEAD_DAYS = 3
PREFIX = "_p"

_known_days: set[date] = set()
_lock = threading.Lock()


def is_partitioned() -> bool:
    """Whether readings are stored in daily partitions here (PostgreSQL)."""
    return connection.vendor == "postgresql"


def partition_name(table: str, day: date) -> str:
    return f"{table}{PREFIX}{day:%Y%m%d}"


def day_of(ts: datetime) -> date:
    """The UTC day a timestamp falls in, i.e. its partition."""
    return ts.astimezone(UTC).date()


def _bound(day: date) -> str:
    return f"{day.isoformat()} 00:00:00+00"


def partition_sql(table: str, day: date) -> list[str]:
    """The statements creating `table`'s partition of `day` and its unique index (both
    idempotent)."""
    name = partition_name(table, day)
    return [
        f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
        f"FOR VALUES FROM ('{_bound(day)}') TO ('{_bound(day + timedelta(days=1))}')",
        f'CREATE UNIQUE INDEX IF NOT EXISTS "{name}_unique" ON "{name}" {PARTITIONED[table]}',
    ]


def existing_days() -> set[date]:
    """The days that have a partition of the readings table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [READINGS],
        )
        names = [row[0] for row in cursor.fetchall()]
    prefix = READINGS + PREFIX
    return {date.fromisoformat(n[len(prefix) :]) for n in names if n.startswith(prefix)}


def create_partitions(days: Iterable[date]) -> list[date]:
    """Create the partitions of every reading table for `days` that lack them; returns the days
    created. Safe to run from several processes at once."""
    wanted = sorted(set(days))
    if not is_partitioned() or not wanted:
        return []
    created = []
    have = existing_days()
    for day in wanted:
        if day in have:
            continue
        try:
            # A savepoint: a concurrent creator's CREATE wins and this one is rolled back alone.
            with transaction.atomic(), connection.cursor() as cursor:
                for table in PARTITIONED:
                    for sql in partition_sql(table, day):
                        cursor.execute(sql)
            created.append(day)
        except DatabaseError:
            if day not in existing_days():
                raise
    return created


def ensure_partitions(timestamps: Iterable[datetime]) -> None:
    """Ingest, before inserting: the days of these timestamps have partitions. Costs nothing
    once this process has seen the day; otherwise the catalog is read, and a missing day (a
    backfill older than the days created ahead) is created. A day remembered here but dropped
    since by retention in another process makes the insert fail; storage then forgets what it
    knew and comes back here."""
    if not is_partitioned():
        return
    days = {day_of(ts) for ts in timestamps}
    if days <= _known_days:
        return
    have = existing_days()
    if days - have:
        create_partitions(days - have)
    with _lock:
        _known_days.update(days)


def forget_known_days() -> None:
    """Forget which days this process has seen (tests; after partitions were dropped)."""
    with _lock:
        _known_days.clear()


def create_ahead(*, now: datetime | None = None) -> list[date]:
    """Beat: yesterday's, today's and the next AHEAD_DAYS days' partitions."""
    today = day_of(now or timezone.now())
    return create_partitions(today + timedelta(days=n) for n in range(-1, AHEAD_DAYS + 1))


def raw_horizon(now: datetime | None = None) -> datetime:
    """The oldest moment raw readings are kept for: midnight (UTC) of the day
    ENEXA_TELEMETRY_RAW_RETENTION_DAYS ago. Retention drops the days before it."""
    now = now or timezone.now()
    day = day_of(now - timedelta(days=settings.ENEXA_TELEMETRY_RAW_RETENTION_DAYS))
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def drop_days_before(horizon: datetime) -> list[date]:
    """Drop every reading table's partitions of the days before `horizon`: a catalog change,
    whatever the number of rows. Returns the days dropped."""
    if not is_partitioned():
        return []
    old = sorted(d for d in existing_days() if d < day_of(horizon))
    with transaction.atomic(), connection.cursor() as cursor:
        # Deferred foreign-key checks still pending in an enclosing transaction would forbid
        # the DROP: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for day in old:
            for table in PARTITIONED:
                cursor.execute(f'DROP TABLE IF EXISTS "{partition_name(table, day)}"')
    with _lock:
        _known_days.difference_update(old)
    return old
