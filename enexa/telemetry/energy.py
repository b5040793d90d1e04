"""Energy per hour, day or month of a site, computed in the database from the stored readings:
grid import and export from the meter's counters, the chargers' from their session counters,
the battery's by integrating its power over time (the reading carries no battery counter).

Hours past raw retention come from HourlyEnergy, filled by roll_up_energy before pruning.
The database sums the increments per bucket (a UTC hour, or less where the zone's midnights
fall inside UTC hours: see periods.py); here the buckets add up to UTC hours or to the days or
months of the range's time zone. A counter's increase is attributed to the period of the
reading that shows it; a counter that drops (a meter reset, a new charging session) counts
from its new value, never as a negative. Battery power is held from one reading to the next,
and not across a gap longer than ENEXA_OFFLINE_AFTER_S (the site was not heard from: its
power is unknown)."""

# Raw SQL here interpolates only table and column names and fixed SQL from code; values are
# parameters.
# ruff: noqa: S608

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from shared.fields import format_timestamp

from .models import ChargerValue, HourlyEnergy, TelemetryReading
from .periods import PeriodRange, boundaries, bucket_seconds, bucket_sql, period_index
from .storage import _table, adapt_ts, as_utc

# How far before the range the reference value of a counter is looked for: a site silent
# longer than this counts its first value in the range from zero.
LOOKBACK = timedelta(days=31)
# The figures of a period, in the response's order.
FIGURES = (
    "grid_import_kwh",
    "grid_export_kwh",
    "battery_charged_kwh",
    "battery_discharged_kwh",
    "chargers_kwh",
)
# How each figure is found, for the docs and the response's `method`.
METHODS = {
    "grid_import_kwh": "counter",
    "grid_export_kwh": "counter",
    "battery_charged_kwh": "integrated_power",
    "battery_discharged_kwh": "integrated_power",
    "chargers_kwh": "counter",
}


def _seconds_between_sql(later: str, earlier: str) -> str:
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


def _increase_sql(value: str, previous: str) -> str:
    """A counter's increase since its previous reading: a drop is a reset (count from the new
    value); the first value of the range has no reference and adds nothing."""
    return (
        f"CASE WHEN {previous} IS NULL THEN 0 WHEN {value} < {previous} THEN {value} "
        f"ELSE {value} - {previous} END"
    )


def _lookback_sql(column: str) -> str:
    """The newest reading before the range (at most LOOKBACK back) that carries `column`: the
    reference for the range's first value. The index on (site, timestamp) finds it scanning
    back; the bound keeps a site that never sends `column` from a scan of its whole history."""
    return (
        f"COALESCE((SELECT MAX(timestamp) FROM {_table(TelemetryReading)} "
        f"WHERE site_id = %s AND timestamp < %s AND timestamp >= %s AND {column} IS NOT NULL), "
        "%s)"
    )


def _columns(**values: str) -> str:
    """The increments' columns in FIGURES order: the given ones, a typed NULL elsewhere (so
    that a period's SUM is null only when nothing could be computed)."""
    return ", ".join(values.get(f, "CAST(NULL AS DOUBLE PRECISION)") + f" AS {f}" for f in FIGURES)


def _grid_counter_sql(column: str, figure: str) -> str:
    """One grid counter's increases, as increment rows."""
    table = _table(TelemetryReading)
    return (
        f"SELECT ts, {_columns(**{figure: _increase_sql('v', 'prev')})} FROM ("
        f"SELECT timestamp AS ts, {column} AS v, "
        f"LAG({column}) OVER (ORDER BY timestamp) AS prev FROM {table} "
        f"WHERE site_id = %s AND {column} IS NOT NULL AND timestamp >= {_lookback_sql(column)} "
        "AND timestamp < %s) AS c WHERE ts >= %s"
    )


def _chargers_sql() -> str:
    """Each charger's session counter's increases (a new session restarts it: a drop)."""
    readings, chargers = _table(TelemetryReading), _table(ChargerValue)
    # ORDER BY ... LIMIT 1 rather than MAX(): over a join only this scans back and stops.
    lookback = (
        f"COALESCE((SELECT r.timestamp FROM {readings} r JOIN {chargers} c "
        "ON c.reading_id = r.id WHERE r.site_id = %s AND r.timestamp < %s "
        "AND r.timestamp >= %s AND c.energy_kwh IS NOT NULL "
        "ORDER BY r.timestamp DESC LIMIT 1), %s)"
    )
    return (
        f"SELECT ts, {_columns(chargers_kwh=_increase_sql('v', 'prev'))} FROM ("
        "SELECT r.timestamp AS ts, c.energy_kwh AS v, LAG(c.energy_kwh) OVER "
        "(PARTITION BY c.charger_code ORDER BY r.timestamp) AS prev "
        f"FROM {readings} r JOIN {chargers} c ON c.reading_id = r.id "
        f"WHERE r.site_id = %s AND c.energy_kwh IS NOT NULL AND r.timestamp >= {lookback} "
        "AND r.timestamp < %s) AS c WHERE ts >= %s"
    )


def _battery_sql() -> str:
    """The battery's power held from each reading to the next, as energy: negative power
    (charge) to `battery_charged_kwh`, positive (discharge) to `battery_discharged_kwh`; not
    across a gap longer than the parameter."""
    gap = _seconds_between_sql("ts", "prev_ts")
    kwh = f"prev_kw * {gap} / 3600.0"
    return (
        "SELECT ts, "
        + _columns(
            battery_charged_kwh=f"CASE WHEN prev_kw < 0 THEN -({kwh}) ELSE 0 END",
            battery_discharged_kwh=f"CASE WHEN prev_kw > 0 THEN {kwh} ELSE 0 END",
        )
        + " FROM (SELECT timestamp AS ts, "
        "LAG(battery_power_kw) OVER (ORDER BY timestamp) AS prev_kw, "
        "LAG(timestamp) OVER (ORDER BY timestamp) AS prev_ts "
        f"FROM {_table(TelemetryReading)} WHERE site_id = %s AND battery_power_kw IS NOT NULL "
        f"AND timestamp >= {_lookback_sql('battery_power_kw')} AND timestamp < %s) AS b "
        f"WHERE ts >= %s AND prev_kw IS NOT NULL AND {gap} <= %s"
    )


def _archived_sql() -> str:
    """The hours rolled up before their raw readings were pruned, as increment rows (their
    raw readings are gone, so nothing counts twice)."""
    return (
        f"SELECT hour AS ts, {', '.join(FIGURES)} FROM {_table(HourlyEnergy)} "
        "WHERE site_id = %s AND hour >= %s AND hour < %s"
    )


def energy_sql(step_s: int) -> str:
    """One query: every figure's increments (UNION ALL), summed per `step_s`-second bucket."""
    increments = " UNION ALL ".join(
        [
            _grid_counter_sql("grid_import_energy_kwh", "grid_import_kwh"),
            _grid_counter_sql("grid_export_energy_kwh", "grid_export_kwh"),
            _battery_sql(),
            _chargers_sql(),
            _archived_sql(),
        ]
    )
    sums = ", ".join(f"SUM({f})" for f in FIGURES)
    return (
        f"SELECT {bucket_sql(step_s)} AS bucket, {sums} FROM ({increments}) AS i "
        "GROUP BY bucket ORDER BY bucket"
    )


def site_energy(site_pk: int, rng: PeriodRange) -> list[dict[str, Any]]:
    """The periods of the range that have readings, oldest first, each with its own start
    (before the range's for the first when the range starts inside it): each figure in kWh,
    null when the period has no value to compute it from (0 when nothing flowed)."""
    cuts = boundaries(rng)
    start, end = adapt_ts(rng.start), adapt_ts(rng.end)
    back = adapt_ts(rng.start - LOOKBACK)
    counter = [site_pk, site_pk, start, back, start, end, start]  # where, lookback (4), to, from
    battery = [*counter, settings.ENEXA_OFFLINE_AFTER_S]
    params = counter + counter + battery + counter + [site_pk, start, end]
    with connection.cursor() as cursor:
        cursor.execute(energy_sql(bucket_seconds(cuts)), params)
        rows = cursor.fetchall()
    sums: dict[int, list[float | None]] = {}
    for bucket, *values in rows:
        total = sums.setdefault(period_index(cuts, as_utc(bucket)), [None] * len(FIGURES))
        for i, value in enumerate(values):
            if value is not None:
                total[i] = (total[i] or 0.0) + float(value)
    return [
        {
            "start": format_timestamp(cuts[index]),
            **{f: None if v is None else round(v, 6) for f, v in zip(FIGURES, total, strict=True)},
        }
        for index, total in sorted(sums.items())
    ]


def roll_up_energy(cutoff: datetime) -> int:
    """Before raw readings older than `cutoff` (an hour boundary) are pruned: each site's
    energy per hour up to it into HourlyEnergy; an hour already rolled up is kept as it is.
    Returns the hours added."""
    table = _table(TelemetryReading)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT site_id, MIN(timestamp) FROM {table} WHERE timestamp < %s GROUP BY site_id",
            [adapt_ts(cutoff)],
        )
        oldest = cursor.fetchall()
    rows = []
    for site_pk, first in oldest:
        start = as_utc(first).replace(minute=0, second=0, microsecond=0)
        for period in site_energy(site_pk, PeriodRange(start, cutoff, "hour")):
            hour = datetime.fromisoformat(period.pop("start").replace("Z", "+00:00"))
            rows.append(HourlyEnergy(site_id=site_pk, hour=hour, **period))
    return len(HourlyEnergy.objects.bulk_create(rows, ignore_conflicts=True))


def energy_csv(periods: list[dict[str, Any]], tz: str) -> Iterator[str]:
    """The periods as CSV lines, a header first; an empty cell where a figure is null; the
    time zone whose midnights cut the days and months in the last column of every line."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["start", *FIGURES, "timezone"])
    yield out.getvalue()
    for period in periods:
        out.seek(0)
        out.truncate()
        writer.writerow(
            [
                period["start"],
                *("" if period[f] is None else f"{period[f]:g}" for f in FIGURES),
                tz,
            ]
        )
        yield out.getvalue()
