"""Reading telemetry back (raw, or bucketed avg/min/max/last computed in the database), CSV
export, and retention (raw readings rolled up into hourly aggregates, then pruned)."""

# Raw SQL here interpolates only table and column names from code; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from enexa.core.errors import InvalidInput
from enexa.registry.models import Site
from shared.events import Event as EventSchema
from shared.fields import format_timestamp, read_timestamp
from shared.telemetry import BatteryReading, BatteryUnitReading, ChargerReading, GridReading
from shared.telemetry import TelemetryReading as ReadingSchema

from .choices import RESOLUTION_SECONDS, Resolution
from .energy import roll_up_energy
from .models import (
    METRICS,
    BatteryUnitValue,
    ChargerValue,
    Event,
    HourlyAggregate,
    HourlyEnergy,
    TelemetryReading,
)
from .storage import _table, adapt_ts, as_utc

DEFAULT_RANGE = timedelta(hours=1)
STATS = ("avg", "min", "max", "last")
# HourlyAggregate's statistics columns, in the order aggregate_sql selects them.
STAT_COLUMNS = tuple(f"{m}_{s}" for m in METRICS for s in STATS)


@dataclass(frozen=True)
class Range:
    """A validated read request: [start, end) at a resolution."""

    start: datetime
    end: datetime
    resolution: str


def parse_range(params: Any, *, now: datetime | None = None) -> Range:
    """`from`, `to` (RFC 3339; default the last hour) and `resolution` (raw, 1m, 15m, 1h)."""
    errors: dict[str, list[str]] = {}
    now = now or timezone.now()
    values = {}
    for name in ("from", "to"):
        raw = params.get(name)
        values[name], message = read_timestamp(raw) if raw else (None, None)
        if message is not None:
            errors[name] = [message]
    end = values["to"] or now
    start = values["from"] or end - DEFAULT_RANGE
    if not errors and start >= end:
        errors["from"] = ["Must be before `to`."]
    resolution = params.get("resolution") or Resolution.RAW
    if resolution not in Resolution.values:
        errors["resolution"] = ["Must be one of: " + ", ".join(Resolution.values) + "."]
    if errors:
        raise InvalidInput("The range is invalid.", errors)
    return Range(start, end, resolution)


# GridReading's fields -> the reading's columns that store them.
GRID_COLUMNS = {f.name: f"grid_{f.name}" for f in dataclasses.fields(GridReading)}

# --- raw ------------------------------------------------------------------------------------------


def _reading_dicts(site: Site, rows: list[dict]) -> list[dict]:
    """Rows with their units and chargers, in the wire shape of the shared schema."""
    ids = [row["id"] for row in rows]
    units: dict[int, list] = {}
    chargers: dict[int, list] = {}
    if ids:
        for u in BatteryUnitValue.objects.filter(reading_id__in=ids).order_by("unit_code").values():
            units.setdefault(u["reading_id"], []).append(
                BatteryUnitReading(
                    id=u["unit_code"],
                    soc_pct=u["soc_pct"],
                    power_kw=u["power_kw"],
                    soh_pct=u["soh_pct"],
                    temperature_c=u["temperature_c"],
                    allowed_charge_kw=u["allowed_charge_kw"],
                    allowed_discharge_kw=u["allowed_discharge_kw"],
                )
            )
        for c in ChargerValue.objects.filter(reading_id__in=ids).order_by("charger_code").values():
            chargers.setdefault(c["reading_id"], []).append(
                ChargerReading(
                    id=c["charger_code"],
                    power_kw=c["power_kw"],
                    status=c["status"] or None,
                    energy_kwh=c["energy_kwh"],
                )
            )
    out = []
    for row in rows:
        battery = None
        if (
            row["battery_soc_pct"] is not None
            or row["battery_power_kw"] is not None
            or (row["id"] in units)
        ):
            battery = BatteryReading(
                row["battery_soc_pct"], row["battery_power_kw"], tuple(units.get(row["id"], ()))
            )
        grid_values = {name: row[column] for name, column in GRID_COLUMNS.items()}
        grid = (
            GridReading(**grid_values) if any(v is not None for v in grid_values.values()) else None
        )
        reading = ReadingSchema(
            site_id=site.code,
            timestamp=row["timestamp"],
            message_id=row["message_id"],
            battery=battery,
            grid=grid,
            chargers=tuple(chargers.get(row["id"], ())),
            backfilled=row["backfilled"],
        ).to_dict()
        reading["received_at"] = format_timestamp(row["received_at"])
        out.append(reading)
    return out


def _raw_queryset(site: Site, start: datetime, end: datetime):
    return TelemetryReading.objects.filter(
        site=site, timestamp__gte=start, timestamp__lt=end
    ).order_by("timestamp")


def raw_readings(site: Site, rng: Range, limit: int) -> tuple[list[dict], datetime | None]:
    """Up to `limit` readings of the range; the second value is where the next page starts."""
    rows = list(_raw_queryset(site, rng.start, rng.end).values()[: limit + 1])
    next_from = rows[limit]["timestamp"] if len(rows) > limit else None
    return _reading_dicts(site, rows[:limit]), next_from


def latest_reading(site: Site) -> dict | None:
    """The newest reading of the site, in the wire shape."""
    row = TelemetryReading.objects.filter(site=site).order_by("-timestamp").values().first()
    return _reading_dicts(site, [row])[0] if row else None


def site_events(
    site: Site, rng: Range, *, kind: str | None, severity: str | None, limit: int
) -> list[dict]:
    """The site's events in the range, newest first, in the wire shape of the shared schema."""
    events = Event.objects.filter(site=site, timestamp__gte=rng.start, timestamp__lt=rng.end)
    if kind:
        events = events.filter(kind=kind)
    if severity:
        events = events.filter(severity=severity)
    out = []
    for e in events.order_by("-timestamp")[:limit]:
        item = EventSchema(
            site_id=site.code,
            event_id=e.event_id,
            timestamp=e.timestamp,
            kind=e.kind,
            severity=e.severity,
            message=e.message,
            data=e.data,
        ).to_dict()
        item["received_at"] = format_timestamp(e.received_at)
        out.append(item)
    return out


# --- aggregated -----------------------------------------------------------------------------------


def bucket_start_sql(seconds: int) -> tuple[str, list]:
    """SQL for the start of a reading's bucket of `seconds`, aligned to the epoch, and its
    parameters."""
    if connection.vendor == "postgresql":
        return "date_bin(%s::interval, timestamp, TIMESTAMPTZ '1970-01-01 00:00:00+00')", [
            f"{seconds} seconds"
        ]
    return "datetime((CAST(strftime('%%s', timestamp) AS INTEGER) / %s) * %s, 'unixepoch')", [
        seconds,
        seconds,
    ]


def aggregate_sql(seconds: int, where: str, *, by_site: bool = False) -> tuple[str, list]:
    """One query: per bucket (and site), count and avg/min/max/last of every metric; `last`
    is the value of the bucket's newest reading (ROW_NUMBER over the bucket, newest first)."""
    bucket, bucket_params = bucket_start_sql(seconds)
    partition = f"site_id, {bucket}" if by_site else bucket
    metrics = ", ".join(METRICS)
    stats = ", ".join(
        f"AVG({m}), MIN({m}), MAX({m}), MAX(CASE WHEN rn = 1 THEN {m} END)" for m in METRICS
    )
    group = "site_id, bucket" if by_site else "bucket"
    sql = (
        f"SELECT {group}, COUNT(*), {stats} FROM ("
        f"SELECT site_id, {bucket} AS bucket, {metrics}, "
        f"ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY timestamp DESC) AS rn "
        f"FROM {_table(TelemetryReading)} WHERE {where}"
        f") AS b GROUP BY {group} ORDER BY {group}"
    )
    return sql, bucket_params + bucket_params


def aggregated_rows(site: Site, rng: Range) -> Iterator[tuple]:
    """(bucket start, count, then avg/min/max/last of each metric), one query, in time order."""
    sql, params = aggregate_sql(
        RESOLUTION_SECONDS[rng.resolution], "site_id = %s AND timestamp >= %s AND timestamp < %s"
    )
    params += [site.pk, adapt_ts(rng.start), adapt_ts(rng.end)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            yield (as_utc(row[0]), *row[1:])


def aggregated_points(site: Site, rng: Range) -> list[dict]:
    """Buckets of the range; at 1 h, hours whose raw readings are pruned come from the hourly
    aggregates kept longer."""
    points = {}
    for row in aggregated_rows(site, rng):
        points[row[0]] = _point(row[0], row[1], row[2:])
    if rng.resolution == Resolution.HOUR:
        archived = HourlyAggregate.objects.filter(
            site=site, hour__gte=rng.start, hour__lt=rng.end
        ).values_list("hour", "count", *STAT_COLUMNS)
        for hour, count, *values in archived:
            points.setdefault(hour, _point(hour, count, values))
    return [points[ts] for ts in sorted(points)]


def _point(ts: datetime, count: int, values) -> dict:
    point: dict[str, Any] = {"timestamp": format_timestamp(ts), "count": count}
    for i, metric in enumerate(METRICS):
        stats = values[4 * i : 4 * i + 4]
        point[metric] = None if stats[0] is None else dict(zip(STATS, stats, strict=True))
    return point


# --- CSV ------------------------------------------------------------------------------------------


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def csv_lines(site: Site, rng: Range) -> Iterator[str]:
    """The range as CSV lines: raw readings' site-level columns, or the buckets' statistics."""
    writer = csv.writer(_Echo())
    if rng.resolution == Resolution.RAW:
        yield writer.writerow(["timestamp", "message_id", "backfilled", *METRICS])
        rows = _raw_queryset(site, rng.start, rng.end).values_list(
            "timestamp", "message_id", "backfilled", *METRICS
        )
        for ts, message_id, backfilled, *values in rows.iterator(chunk_size=2000):
            yield writer.writerow(
                [format_timestamp(ts), message_id or "", int(backfilled), *_cells(values)]
            )
        return
    yield writer.writerow(["timestamp", "count", *STAT_COLUMNS])
    for ts, count, *values in aggregated_rows(site, rng):
        yield writer.writerow([format_timestamp(ts), count, *_cells(values)])


def _cells(values) -> list:
    return ["" if v is None else f"{v:g}" for v in values]


# --- retention ------------------------------------------------------------------------------------


def prune_telemetry(*, now: datetime | None = None) -> dict[str, int]:
    """Roll raw readings older than ENEXA_TELEMETRY_RAW_RETENTION_DAYS into hourly aggregates
    and hourly energy, and delete them; delete both roll-ups older than
    ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS.

    The raw cutoff is aligned to the hour so that every rolled-up hour is complete. An hour
    already rolled up is kept as it is (a reading arriving that late is dropped)."""
    now = now or timezone.now()
    raw_days = settings.ENEXA_TELEMETRY_RAW_RETENTION_DAYS
    cutoff = (now - timedelta(days=raw_days)).replace(minute=0, second=0, microsecond=0)
    agg_cutoff = now - timedelta(days=settings.ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS)
    reading_table = _table(TelemetryReading)
    old = f"SELECT id FROM {reading_table} WHERE timestamp < %s"
    columns = ["site_id", "hour", "count", *STAT_COLUMNS]
    select, params = aggregate_sql(3600, "timestamp < %s", by_site=True)
    with transaction.atomic(), connection.cursor() as cursor:
        energy_hours = roll_up_energy(cutoff)
        cursor.execute(
            f"INSERT INTO {_table(HourlyAggregate)} ({', '.join(columns)}) {select} "
            "ON CONFLICT DO NOTHING",
            [*params, adapt_ts(cutoff)],
        )
        rolled = cursor.rowcount
        for child in (BatteryUnitValue, ChargerValue):
            cursor.execute(
                f"DELETE FROM {_table(child)} WHERE reading_id IN ({old})", [adapt_ts(cutoff)]
            )
        cursor.execute(f"DELETE FROM {reading_table} WHERE timestamp < %s", [adapt_ts(cutoff)])
        deleted = cursor.rowcount
        cursor.execute(
            f"DELETE FROM {_table(HourlyAggregate)} WHERE hour < %s", [adapt_ts(agg_cutoff)]
        )
        expired = cursor.rowcount
    HourlyEnergy.objects.filter(hour__lt=agg_cutoff).delete()
    return {
        "raw_deleted": deleted,
        "hours_rolled_up": rolled,
        "energy_hours_rolled_up": energy_hours,
        "aggregates_deleted": expired,
    }
