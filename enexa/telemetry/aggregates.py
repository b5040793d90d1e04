"""Per-site aggregates at 1 min, 15 min and 1 h, kept up to date in small steps.

Ingest marks the minutes it wrote readings into (StaleMinute, in the same statement as the
readings: an index probe per reading, no row lock and no read-modify-write of a hot aggregate
row). `refresh_aggregates` (the worker, every few seconds, and a chart read that finds stale
minutes in its range) recomputes those minutes from the raw readings and rolls them up into
their quarters and hours, three statements whatever the number of sites. A late (backfilled)
reading marks its minute like any other, so the buckets it falls in are recomputed; hourly
buckets are never recomputed from raw readings that are gone, so they outlive retention."""

# SQL here interpolates only table and column names from code; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from .models import AGGREGATE_STATS, METRICS, StaleMinute, TelemetryAggregate, TelemetryReading
from .storage import _table, adapt_ts, as_utc

MINUTE_S, QUARTER_S, HOUR_S = 60, 900, 3600
RESOLUTIONS_S = (MINUTE_S, QUARTER_S, HOUR_S)
# Stale minutes of one site closer than this are recomputed as one window. At least an hour,
# so the windows of one site never overlap once widened to whole hours.
MERGE_GAP = timedelta(hours=1)
# Stale minutes taken per refresh, so one run stays short however far behind it is.
REFRESH_BATCH = 20_000
# pg_advisory_xact_lock key: refreshes run one at a time, so an older computation of a bucket
# can never overwrite a newer one.
LOCK_KEY = 0x7E1E_A66
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STAT_COLUMNS = tuple(f"{m}_{s}" for m in METRICS for s in AGGREGATE_STATS)


def floor_to(ts: datetime, seconds: int) -> datetime:
    """The start of the epoch-aligned bucket of `seconds` that `ts` falls in."""
    offset = int((ts - EPOCH).total_seconds()) // seconds * seconds
    return EPOCH + timedelta(seconds=offset)


def ceil_to(ts: datetime, seconds: int) -> datetime:
    """The first epoch-aligned bucket boundary of `seconds` at or after `ts`."""
    start = floor_to(ts, seconds)
    return start if start == ts else start + timedelta(seconds=seconds)


def bucket_sql(column: str, seconds: int) -> str:
    """SQL for the epoch-aligned bucket start of `column` (a number of seconds, no parameter:
    the statement stays the same for prepared plans)."""
    if connection.vendor == "postgresql":
        return (
            f"date_bin('{seconds} seconds'::interval, {column}, "
            "TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        )
    epoch_s = f"CAST(strftime('%%s', {column}) AS INTEGER)"
    return f"datetime(({epoch_s} / {seconds}) * {seconds}, 'unixepoch')"


def _windows_sql() -> str:
    """The windows [(site_id, start_at, end_at)], sent as one JSON parameter, as a relation."""
    if connection.vendor == "postgresql":
        return (
            "jsonb_to_recordset(%s::jsonb) AS w(site_id bigint, start_at timestamptz, "
            "end_at timestamptz)"
        )
    return (
        "(SELECT json_extract(value, '$.site_id') AS site_id, "
        "json_extract(value, '$.start_at') AS start_at, "
        "json_extract(value, '$.end_at') AS end_at FROM json_each(%s)) AS w"
    )


def _windows_param(windows: list[tuple[int, datetime, datetime]]) -> str:
    as_text = (
        (lambda v: v.isoformat()) if connection.vendor == "postgresql" else (lambda v: adapt_ts(v))
    )
    return json.dumps(
        [{"site_id": s, "start_at": as_text(a), "end_at": as_text(b)} for s, a, b in windows]
    )


def _upsert_sql(seconds: int) -> str:
    """Recompute the buckets of `seconds` within the windows: from raw readings for minutes,
    from the next finer aggregate for quarters and hours; one INSERT ... ON CONFLICT UPDATE.

    A stored bucket is only replaced by one of at least as many readings. Readings are never
    deleted but by retention, so a smaller count means the bucket's raw day is gone and only
    late readings are left to count: an hour already rolled up keeps what it had (the late
    reading stays raw until the next retention run, as before)."""
    table = _table(TelemetryAggregate)
    if seconds == MINUTE_S:
        source, ts, count = _table(TelemetryReading), "timestamp", "1"
        values = {m: {"sum": m, "n": m, "min": m, "max": m, "last": m} for m in METRICS}
        aggregates = {"sum": "SUM", "n": "COUNT", "min": "MIN", "max": "MAX"}
        where = ""
    else:
        source, ts, count = table, "last_at", "count"
        values = {m: {s: f"{m}_{s}" for s in AGGREGATE_STATS} for m in METRICS}
        aggregates = {"sum": "SUM", "n": "SUM", "min": "MIN", "max": "MAX"}
        finer = MINUTE_S if seconds == QUARTER_S else QUARTER_S
        where = f" AND x.resolution_s = {finer}"
    ts_column = "timestamp" if seconds == MINUTE_S else "bucket_at"
    bucket = bucket_sql(f"x.{ts_column}", seconds)
    inner_columns = sorted({c for stats in values.values() for c in stats.values()})
    inner = ", ".join(f"x.{c}" for c in inner_columns)
    stats = []
    for m in METRICS:
        for stat in AGGREGATE_STATS:
            column = values[m][stat]
            if stat == "last":
                stats.append(f"MAX(CASE WHEN rn = 1 THEN {column} END)")
            else:
                stats.append(f"{aggregates[stat]}({column})")
    names = ["site_id", "resolution_s", "bucket_at", "count", "last_at", *STAT_COLUMNS]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names[3:])
    conflict = f"DO UPDATE SET {updates} WHERE excluded.count >= {table}.count"
    return (
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"SELECT site_id, {seconds}, bucket, SUM(c), MAX(ts), {', '.join(stats)} FROM ("
        f"SELECT x.site_id, {bucket} AS bucket, {count} AS c, x.{ts} AS ts, {inner}, "
        f"ROW_NUMBER() OVER (PARTITION BY x.site_id, {bucket} ORDER BY x.{ts} DESC) AS rn "
        f"FROM {source} AS x JOIN {_windows_sql()} ON x.site_id = w.site_id "
        f"AND x.{ts_column} >= w.start_at AND x.{ts_column} < w.end_at{where}"
        ") AS b GROUP BY site_id, bucket "
        f"ON CONFLICT (site_id, resolution_s, bucket_at) {conflict}"
    )


def windows_of(stale: list[tuple[int, datetime]]) -> list[tuple[int, datetime, datetime]]:
    """Stale (site, minute) pairs merged into per-site windows [start, end) of whole minutes."""
    by_site: dict[int, list[datetime]] = defaultdict(list)
    for site_pk, minute in stale:
        by_site[site_pk].append(minute)
    windows = []
    for site_pk, minutes in sorted(by_site.items()):
        minutes.sort()
        start = end = minutes[0]
        for minute in minutes[1:]:
            if minute - end > MERGE_GAP:
                windows.append((site_pk, start, end + timedelta(minutes=1)))
                start = minute
            end = minute
        windows.append((site_pk, start, end + timedelta(minutes=1)))
    return windows


def recompute(windows: list[tuple[int, datetime, datetime]]) -> None:
    """Recompute every bucket that overlaps the windows, at each resolution in turn."""
    if not windows:
        return
    with connection.cursor() as cursor:
        for seconds in RESOLUTIONS_S:
            widened = [(s, floor_to(a, seconds), ceil_to(b, seconds)) for s, a, b in windows]
            cursor.execute(_upsert_sql(seconds), [_windows_param(widened)])


def _take_stale(site_pk: int | None) -> list[tuple[int, datetime]]:
    table = _table(StaleMinute)
    where = "" if site_pk is None else "WHERE site_id = %s"
    params: list[Any] = [] if site_pk is None else [site_pk]
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN "
            f"(SELECT id FROM {table} {where} ORDER BY id LIMIT {REFRESH_BATCH}) "
            "RETURNING site_id, minute_at",
            params,
        )
        return [(site, as_utc(minute)) for site, minute in cursor.fetchall()]


def refresh_aggregates(*, site_pk: int | None = None) -> int:
    """Recompute the buckets of the minutes marked stale (of one site, or all), up to
    REFRESH_BATCH of them; returns how many minutes were taken."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        stale = _take_stale(site_pk)
        recompute(windows_of(stale))
    return len(stale)


def refresh_all() -> int:
    """Every stale minute, batch after batch (retention, before raw days are dropped)."""
    total = 0
    while taken := refresh_aggregates():
        total += taken
    return total


def has_stale(site_pk: int, start: datetime, end: datetime) -> bool:
    """Whether the site has minutes in [start, end) waiting for a refresh."""
    return StaleMinute.objects.filter(
        site_id=site_pk, minute_at__gte=floor_to(start, HOUR_S), minute_at__lt=end
    ).exists()


def rebuild(site_pks: list[int], start: datetime, end: datetime) -> None:
    """Recompute every bucket of these sites in [start, end) from the raw readings (after a
    bulk load that bypassed ingest, e.g. the bench's COPY)."""
    step = timedelta(days=1)
    with transaction.atomic():
        at = floor_to(start, HOUR_S)
        while at < end:
            upto = min(at + step, ceil_to(end, HOUR_S))
            recompute([(s, at, upto) for s in site_pks])
            at = upto
