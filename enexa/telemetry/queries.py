"""Reading telemetry back (raw, or the series of a site's maintained aggregates), CSV export,
and retention (whole days of raw readings dropped, aggregates kept longer)."""

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
from shared.fields import format_timestamp, read_range
from shared.telemetry import BatteryReading, BatteryUnitReading, ChargerReading, GridReading
from shared.telemetry import TelemetryReading as ReadingSchema

from . import aggregates, partitions
from .choices import RESOLUTION_SECONDS, Resolution
from .energy import roll_up_energy
from .models import (
    AGGREGATE_STATS,
    METRICS,
    BatteryUnitValue,
    ChargerValue,
    Event,
    HourlyEnergy,
    StaleMinute,
    TelemetryAggregate,
    TelemetryReading,
)
from .storage import _table, adapt_ts, as_utc

DEFAULT_RANGE = timedelta(hours=1)
# GridReading's fields -> the reading's columns that store them.
GRID_COLUMNS = {f.name: f"grid_{f.name}" for f in dataclasses.fields(GridReading)}
STATS = ("avg", "min", "max", "last")
# The statistics of a point and of a CSV row of aggregates.
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
    start, end = read_range(params, errors)
    end = end or now
    start = start or end - DEFAULT_RANGE
    if not errors and start >= end:
        errors["from"] = ["Must be before `to`."]
    resolution = params.get("resolution") or Resolution.RAW
    if resolution not in Resolution.values:
        errors["resolution"] = ["Must be one of: " + ", ".join(Resolution.values) + "."]
    if errors:
        raise InvalidInput("The range is invalid.", errors)
    return Range(start, end, resolution)


# --- raw ------------------------------------------------------------------------------------------


def _children(rows: list[dict]) -> tuple[dict[int, list], dict[int, list]]:
    """The units and chargers of these readings, by reading id."""
    ids = [row["id"] for row in rows]
    units: dict[int, list] = {}
    chargers: dict[int, list] = {}
    if not ids:
        return units, chargers
    # The readings' time span too: on PostgreSQL it confines the lookup to their days'
    # partitions.
    span = {
        "reading_id__in": ids,
        "timestamp__gte": min(row["timestamp"] for row in rows),
        "timestamp__lte": max(row["timestamp"] for row in rows),
    }
    for u in BatteryUnitValue.objects.filter(**span).order_by("unit_code").values():
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
    for c in ChargerValue.objects.filter(**span).order_by("charger_code").values():
        chargers.setdefault(c["reading_id"], []).append(
            ChargerReading(
                id=c["charger_code"],
                power_kw=c["power_kw"],
                status=c["status"] or None,
                energy_kwh=c["energy_kwh"],
            )
        )
    return units, chargers


def _reading_dicts(
    site: Site, rows: list[dict], children: tuple[dict, dict] | None = None
) -> list[dict]:
    """Rows with their units and chargers, in the wire shape of the shared schema."""
    units, chargers = children if children is not None else _children(rows)
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


def latest_readings(sites: list[Site]) -> dict[str, dict | None]:
    """The newest reading of each site (by code), in the wire shape: one query on PostgreSQL
    (a LATERAL lookup per site, each reading the newest day's partition first)."""
    if connection.vendor != "postgresql":
        return {site.code: latest_reading(site) for site in sites}
    by_pk = {site.pk: site for site in sites}
    table = _table(TelemetryReading)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r.* FROM unnest(%s::bigint[]) AS s(pk) CROSS JOIN LATERAL "
            f"(SELECT * FROM {table} WHERE site_id = s.pk ORDER BY timestamp DESC LIMIT 1) AS r",
            [list(by_pk)],
        )
        names = [c.name for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    out: dict[str, dict | None] = {site.code: None for site in sites}
    children = _children(rows)  # two queries for all the sites
    for row in rows:
        site = by_pk[row["site_id"]]
        out[site.code] = _reading_dicts(site, [row], children)[0]
    return out


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


# --- aggregated ---------------------------------------------------------------------------------

# The finest resolution whose buckets over a span stay within a chart's width (about 1,500
# points): what `series` picks when asked for none.
AUTO_RESOLUTIONS = (
    (timedelta(days=1), Resolution.MINUTE),
    (timedelta(days=15), Resolution.QUARTER),
)


def pick_resolution(start: datetime, end: datetime) -> str:
    for longest, resolution in AUTO_RESOLUTIONS:
        if end - start <= longest:
            return resolution
    return Resolution.HOUR


def series(site: Site, start: datetime, end: datetime, resolution: str | None = None) -> list[dict]:
    """The site's buckets overlapping [start, end) at `resolution` (1m, 15m, 1h; None picks by
    the span), each whole, read from the maintained aggregates: {timestamp, count, and per
    metric {avg, min, max, last} or None}. Minutes still waiting for the worker's refresh in
    the range are refreshed first, so a chart never misses the last seconds."""
    resolution = resolution or pick_resolution(start, end)
    return [
        slot.point() for slot in slot_stats(site.pk, start, end, RESOLUTION_SECONDS[resolution])
    ]


@dataclass(frozen=True)
class MetricStats:
    """One metric over one slot: its number of values, avg, min, max and last value (of the
    newest sub-bucket that has one)."""

    n: int
    avg: float
    min: float
    max: float
    last: float | None


@dataclass(frozen=True)
class SlotStats:
    """One slot of a site's telemetry: its start, how many readings it holds, and the
    statistics of each metric that has a value in it (a metric without one is absent)."""

    start: datetime
    count: int
    metrics: dict[str, MetricStats]

    def avg(self, metric: str) -> float | None:
        stats = self.metrics.get(metric)
        return stats.avg if stats else None

    def max(self, metric: str) -> float | None:
        stats = self.metrics.get(metric)
        return stats.max if stats else None

    def last(self, metric: str) -> float | None:
        stats = self.metrics.get(metric)
        return stats.last if stats else None

    def point(self) -> dict:
        """The read endpoint's shape of the slot."""
        point: dict[str, Any] = {"timestamp": format_timestamp(self.start), "count": self.count}
        for metric in METRICS:
            stats = self.metrics.get(metric)
            point[metric] = (
                {"avg": stats.avg, "min": stats.min, "max": stats.max, "last": stats.last}
                if stats
                else None
            )
        return point


def source_resolution(seconds: int) -> int:
    """The coarsest maintained aggregate (s) whose buckets tile slots of `seconds` exactly."""
    if seconds <= 0 or seconds % aggregates.MINUTE_S:
        raise ValueError(f"A slot is a positive multiple of 60 s, not {seconds}.")
    return max(r for r in aggregates.RESOLUTIONS_S if seconds % r == 0)


def _slot_stats_sql(seconds: int, resolution_s: int) -> str:
    """One query over the aggregates of `resolution_s` combining them into slots of `seconds`:
    counts, sums and n add up, min and max of the mins and maxes, and per metric the `last` of
    the newest sub-bucket that has one (a window per metric, newest non-null first). A slot
    that is one bucket of `resolution_s` reads that bucket's row as it is."""
    where = (
        f"FROM {_table(TelemetryAggregate)} AS a WHERE a.site_id = %s "
        f"AND a.resolution_s = {resolution_s} AND a.bucket_at >= %s AND a.bucket_at < %s"
    )
    if seconds == resolution_s:
        columns = ", ".join(f"a.{m}_{stat}" for m in METRICS for stat in AGGREGATE_STATS)
        return f"SELECT a.bucket_at, a.count, {columns} {where} ORDER BY a.bucket_at"
    slot = aggregates.bucket_sql("a.bucket_at", seconds)
    inner, outer = [], []
    for i, m in enumerate(METRICS):
        inner.append(
            f"ROW_NUMBER() OVER (PARTITION BY {slot} ORDER BY "
            f"CASE WHEN a.{m}_last IS NULL THEN 1 ELSE 0 END, a.last_at DESC) AS rn{i}"
        )
        outer.append(
            f"SUM({m}_sum), SUM({m}_n), MIN({m}_min), MAX({m}_max), "
            f"MAX(CASE WHEN rn{i} = 1 THEN {m}_last END)"
        )
    return (
        f"SELECT slot, SUM(count), {', '.join(outer)} FROM ("
        f"SELECT {slot} AS slot, a.*, {', '.join(inner)} {where}"
        ") AS b GROUP BY slot ORDER BY slot"
    )


def slot_stats(site_pk: int, start: datetime, end: datetime, seconds: int) -> list[SlotStats]:
    """Per slot of `seconds` (a multiple of 60, aligned to the epoch) overlapping [start, end),
    each whole, the site's statistics (SlotStats, oldest first; slots without readings are
    left out), from the coarsest maintained aggregate dividing the slot: one query.

    Minutes still waiting for the worker's refresh in the range are refreshed first, so a
    reading stored a moment ago counts. Hourly aggregates outlive the raw readings, so slots
    of whole hours reach back as far as they do."""
    resolution_s = source_resolution(seconds)
    first, upto = aggregates.floor_to(start, seconds), aggregates.ceil_to(end, seconds)
    if aggregates.has_stale(site_pk, first, upto):
        aggregates.refresh_aggregates(site_pk=site_pk)
    with connection.cursor() as cursor:
        cursor.execute(
            _slot_stats_sql(seconds, resolution_s), [site_pk, adapt_ts(first), adapt_ts(upto)]
        )
        rows = cursor.fetchall()
    out = []
    for slot_at, count, *values in rows:
        metrics = {}
        for i, metric in enumerate(METRICS):
            total, n, low, high, last = values[5 * i : 5 * i + 5]
            if n:
                metrics[metric] = MetricStats(int(n), total / n, low, high, last)
        out.append(SlotStats(as_utc(slot_at), int(count), metrics))
    return out


def aggregated_points(site: Site, rng: Range) -> list[dict]:
    """The read endpoint's buckets of the range (see `series`)."""
    return series(site, rng.start, rng.end, rng.resolution)


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
    for point in aggregated_points(site, rng):
        stats = [(point[m] or {}).get(s) for m in METRICS for s in STATS]
        yield writer.writerow([point["timestamp"], point["count"], *_cells(stats)])


def _cells(values) -> list:
    return ["" if v is None else f"{v:g}" for v in values]


# --- retention ------------------------------------------------------------------------------------


def _delete(model, where: str, params: list) -> int:
    """A plain DELETE: the ORM's would load every row to send the audit log's delete signals,
    which this bookkeeping does not need (no request is being audited here)."""
    values = [adapt_ts(p) if isinstance(p, datetime) else p for p in params]
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(model)} WHERE {where}", values)
        return cursor.rowcount


def delete_fine_aggregates_before(horizon: datetime) -> int:
    """Delete the 1 min and 15 min aggregates before `horizon` (they go with the raw days)."""
    return _delete(
        TelemetryAggregate, "resolution_s < %s AND bucket_at < %s", [aggregates.HOUR_S, horizon]
    )


def prune_telemetry(*, now: datetime | None = None) -> dict[str, int]:
    """Apply the retentions: raw readings before the raw horizon (whole UTC days,
    ENEXA_TELEMETRY_RAW_RETENTION_DAYS; on PostgreSQL their daily partitions are dropped) and
    the 1 min and 15 min aggregates with them; hourly aggregates older than
    ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS.

    Stale minutes are refreshed first, so the hours being given up are complete in the
    hourly aggregates that stay, and each hour's energy (enexa.telemetry.energy) is kept as
    HourlyEnergy as long as the hourly aggregates, so energy reports reach back past the raw
    retention."""
    now = now or timezone.now()
    horizon = partitions.raw_horizon(now)
    hour_cutoff = now - timedelta(days=settings.ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS)
    refreshed = aggregates.refresh_all()
    counts = {"minutes_refreshed": refreshed}
    with transaction.atomic():
        counts["energy_hours_rolled_up"] = roll_up_energy(horizon)
    if partitions.is_partitioned():
        counts["raw_days_dropped"] = len(partitions.drop_days_before(horizon))
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            for child in (BatteryUnitValue, ChargerValue):
                cursor.execute(
                    f"DELETE FROM {_table(child)} WHERE timestamp < %s", [adapt_ts(horizon)]
                )
            cursor.execute(
                f"DELETE FROM {_table(TelemetryReading)} WHERE timestamp < %s",
                [adapt_ts(horizon)],
            )
            counts["raw_deleted"] = cursor.rowcount
    counts["fine_aggregates_deleted"] = delete_fine_aggregates_before(horizon)
    counts["hourly_aggregates_deleted"] = _delete(
        TelemetryAggregate, "resolution_s = %s AND bucket_at < %s", [aggregates.HOUR_S, hour_cutoff]
    )
    counts["energy_hours_deleted"] = _delete(HourlyEnergy, "hour < %s", [hour_cutoff])
    # Minutes marked by readings of days now gone cannot be recomputed any more.
    _delete(StaleMinute, "minute_at < %s", [horizon])
    return counts
