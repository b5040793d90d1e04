"""How telemetry reaches the database: one `INSERT ... ON CONFLICT DO NOTHING RETURNING`
per table and batch, so duplicates are refused by the unique constraints and counts are exact;
the minutes written are marked stale for the aggregates in the same step."""

# Raw SQL here interpolates only table and column names from code; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from enexa.audit import services as audit
from enexa.core.sql import run_prepared
from shared.telemetry import TelemetryReading as ReadingSchema

from . import partitions
from .models import BatteryUnitValue, ChargerValue, StaleMinute, TelemetryReading


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(connection.ops.quote_name(n) for n in names)


def adapt_ts(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def as_utc(value: Any) -> datetime:
    """A timestamp the database handed back (datetime or SQLite text) as aware UTC."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _jsonb_select(types: Iterable[str], offset: int = 0) -> str:
    """`(e->>i)::type, ... FROM jsonb_array_elements(%s::jsonb) AS e`: the columns of the rows
    sent as one JSON array parameter, each element's items from index `offset` on."""
    values = ", ".join(f"(e->>{i})::{t}" for i, t in enumerate(types, offset))
    return f"{values} FROM jsonb_array_elements(%s::jsonb) AS e"


def insert_ignoring_duplicates(
    model, columns: dict[str, str], rows: list[tuple], returning: tuple[str, ...] = ()
) -> list[tuple]:
    """One `INSERT ... ON CONFLICT DO NOTHING [RETURNING ...]` for all `rows`; the rows the
    database actually inserted come back (a duplicate returns nothing).

    `columns` maps each column to its PostgreSQL type: there the rows travel as one JSON
    parameter expanded by `jsonb_array_elements` (psycopg would otherwise spend most of the
    request splitting a query of thousands of placeholders or quoting arrays in Python, while
    json.dumps is C); SQLite gets a plain multi-row VALUES."""
    if not rows:
        return []
    names = tuple(columns)
    sql = f"INSERT INTO {_table(model)} ({_columns(names)}) "
    if connection.vendor == "postgresql":
        sql += f"SELECT {_jsonb_select(columns.values())}"
        params: list = [json.dumps(rows, default=_json_default)]
    else:
        placeholder = "(" + ", ".join(["%s"] * len(names)) + ")"
        sql += "VALUES " + ", ".join([placeholder] * len(rows))
        params = [value for row in rows for value in row]
    sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += f" RETURNING {_columns(returning)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if returning else []


# Column -> PostgreSQL type, in the order the row tuples below are built.
READING_COLUMNS = {
    "site_id": "bigint",
    "timestamp": "timestamptz",
    "message_id": "varchar",
    "received_at": "timestamptz",
    "backfilled": "boolean",
    "battery_soc_pct": "float8",
    "battery_power_kw": "float8",
    "grid_import_kw": "float8",
    "grid_export_kw": "float8",
    "grid_frequency_hz": "float8",
    "chargers_power_kw": "float8",
    "grid_voltage_v": "float8",
    "grid_import_energy_kwh": "float8",
    "grid_export_energy_kwh": "float8",
}


# The first two columns of a unit's or charger's row are its reading's id and timestamp.
UNIT_COLUMNS = {
    "reading_id": "bigint",
    "timestamp": "timestamptz",
    "unit_code": "varchar",
    "soc_pct": "float8",
    "power_kw": "float8",
    "soh_pct": "float8",
    "temperature_c": "float8",
    "allowed_charge_kw": "float8",
    "allowed_discharge_kw": "float8",
}


CHARGER_COLUMNS = {
    "reading_id": "bigint",
    "timestamp": "timestamptz",
    "charger_code": "varchar",
    "power_kw": "float8",
    "status": "varchar",
    "energy_kwh": "float8",
}


STALE_COLUMNS = {"site_id": "bigint", "minute_at": "timestamptz"}


def reading_key(site_pk: int, message_id: str | None, ts: datetime) -> tuple:
    """What makes a reading unique: (site, message_id), else (site, timestamp)."""
    return (site_pk, "m", message_id) if message_id else (site_pk, "t", ts)


def _returned_key(site_pk: int, message_id: str | None, ts: Any) -> tuple:
    """reading_key of a reading the INSERT returned (its timestamp only counts without a
    message_id)."""
    return reading_key(site_pk, message_id, None if message_id else as_utc(ts))


def _reading_row(site_pk: int, r: ReadingSchema, received_at: Any, timestamp: Any) -> tuple:
    battery, grid = r.battery, r.grid
    chargers_kw = [c.power_kw for c in r.chargers if c.power_kw is not None]
    return (
        site_pk,
        timestamp,
        r.message_id,
        received_at,
        r.backfilled,
        battery.soc_pct if battery else None,
        battery.power_kw if battery else None,
        grid.import_kw if grid else None,
        grid.export_kw if grid else None,
        grid.frequency_hz if grid else None,
        sum(chargers_kw) if chargers_kw else None,
        grid.voltage_v if grid else None,
        grid.import_energy_kwh if grid else None,
        grid.export_energy_kwh if grid else None,
    )


def _first_of_each(rows: list[tuple]) -> list[tuple]:
    """Rows keyed by their first value (a unit or charger id), the first of each kept: a unit
    or charger listed twice in one reading keeps its first values, so the rows of a new
    reading never conflict (PostgreSQL inserts them without ON CONFLICT, about a fifth of its
    work on a batch)."""
    if len(rows) < 2 or len({row[0] for row in rows}) == len(rows):
        return rows
    firsts: dict[Any, tuple] = {}
    for row in rows:
        firsts.setdefault(row[0], row)
    return list(firsts.values())


def _unit_values(reading: ReadingSchema) -> list[tuple]:
    if reading.battery is None:
        return []
    return _first_of_each(
        [
            (
                u.id,
                u.soc_pct,
                u.power_kw,
                u.soh_pct,
                u.temperature_c,
                u.allowed_charge_kw,
                u.allowed_discharge_kw,
            )
            for u in reading.battery.units
        ]
    )


def _charger_values(reading: ReadingSchema) -> list[tuple]:
    return _first_of_each(
        [(c.id, c.power_kw, c.status or "", c.energy_kwh) for c in reading.chargers]
    )


# The status of a telemetry post, as the statement that stores it sees it: 201 when it stored
# something new, else 200 (enexa.telemetry.views.counts_response answers the same).
STORED_STATUS_SQL = "CASE WHEN EXISTS (SELECT 1 FROM new) THEN 201 ELSE 200 END"


def store_readings(
    valid: list[tuple[int, ReadingSchema, int]], now: datetime, call: audit.Call | None = None
) -> list[tuple]:
    """Insert the readings and their unit/charger rows; returns the keys of the new readings.

    With `call`, its audit entry is written in the same statement (PostgreSQL; one commit for
    both) or right after (SQLite), with the status the answer will have."""
    if connection.vendor == "postgresql":
        return _store_readings_postgresql(valid, now, call)
    received_at = adapt_ts(now)
    rows = [_reading_row(site_pk, r, received_at, adapt_ts(r.timestamp)) for _, r, site_pk in valid]
    by_key = {reading_key(site_pk, r.message_id, r.timestamp): r for _, r, site_pk in valid}
    with transaction.atomic():
        returned = insert_ignoring_duplicates(
            TelemetryReading, READING_COLUMNS, rows, ("id", "site_id", "message_id", "timestamp")
        )
        keys = []
        unit_rows: list[tuple] = []
        charger_rows: list[tuple] = []
        minutes = set()
        for reading_id, site_pk, message_id, ts in returned:
            key = _returned_key(site_pk, message_id, ts)
            keys.append(key)
            reading = by_key[key]
            unit_rows.extend((reading_id, ts, *v) for v in _unit_values(reading))
            charger_rows.extend((reading_id, ts, *v) for v in _charger_values(reading))
            minutes.add((site_pk, adapt_ts(as_utc(ts).replace(second=0, microsecond=0))))
        insert_ignoring_duplicates(BatteryUnitValue, UNIT_COLUMNS, unit_rows)
        insert_ignoring_duplicates(ChargerValue, CHARGER_COLUMNS, charger_rows)
        insert_ignoring_duplicates(StaleMinute, STALE_COLUMNS, sorted(minutes))
    if call is not None:
        call.record(201 if keys else 200)
    return keys


def _pg_identity(message_id: str, ts: str) -> str:
    """SQL for a reading's identity within its site (message_id, else timestamp), written once
    for both sides of the join below."""
    return f"coalesce('m' || {message_id}, 't' || extract(epoch from {ts})::text)"


def _store_readings_postgresql(
    valid: list[tuple[int, ReadingSchema, int]], now: datetime, call: audit.Call | None
) -> list[tuple]:
    """PostgreSQL: readings, units, chargers and the stale minutes in ONE statement
    (data-modifying CTEs), run in autocommit, so a single reading costs one round trip and one
    commit.

    The new readings' ids come back from the first INSERT and are joined to their unit and
    charger rows by the readings' identity (site and message_id, else site and timestamp)."""
    partitions.ensure_partitions(reading.timestamp for _, reading, _ in valid)
    rows, units, chargers = [], [], []
    for _, reading, site_pk in valid:
        # Aware datetimes as they are: orjson writes RFC 3339, which the casts below read.
        row = _reading_row(site_pk, reading, now, reading.timestamp)
        rows.append(row)
        identity = (site_pk, reading.message_id, row[1])
        units.extend((*identity, *v) for v in _unit_values(reading))
        chargers.extend((*identity, *v) for v in _charger_values(reading))
    # orjson: the rows hold validated floats, text and aware datetimes (RFC 3339 as the
    # casts below read them); json.dumps with a default for datetimes cost several times more.
    params = [orjson.dumps(part).decode() for part in (rows, units, chargers)]
    if call is not None:
        params += call.params()
    sql = _insert_readings_sql(audited=call is not None)
    try:
        # A savepoint only inside a transaction (tests): in autocommit a failed statement
        # leaves nothing to roll back, and the hot path pays no extra round trip.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            # Prepared: planning this statement was about 60% of its cost for one reading.
            returned = run_prepared(sql, params, fetch=True)
    except IntegrityError as exc:
        # This process remembered a day another one has dropped since (retention): look again.
        if "no partition of relation" not in str(exc):
            raise
        partitions.forget_known_days()
        partitions.ensure_partitions(reading.timestamp for _, reading, _ in valid)
        returned = run_prepared(sql, params, fetch=True)
    return [_returned_key(site_pk, message_id, ts) for site_pk, message_id, ts in returned]


@functools.cache
def _insert_readings_sql(*, audited: bool) -> str:
    """The PostgreSQL statement of _store_readings_postgresql (built once per process), with
    the call's audit entry when `audited`."""
    child_identity = _pg_identity("(e->>1)", "(e->>2)::timestamptz")

    def child(model, columns: dict[str, str]) -> str:
        # No ON CONFLICT: the rows belong to readings this statement inserted, one per unit or
        # charger id (_first_of_each).
        return (
            f"INSERT INTO {_table(model)} ({_columns(tuple(columns))}) "
            f"SELECT new.id, new.timestamp, {_jsonb_select(list(columns.values())[2:], offset=3)} "
            f"JOIN new ON new.site_id = (e->>0)::bigint AND new.identity = {child_identity}"
        )

    minute = "date_bin('60 seconds'::interval, timestamp, TIMESTAMPTZ '1970-01-01 00:00:00+00')"

    return (
        f"WITH ins AS (INSERT INTO {_table(TelemetryReading)} "
        f"({_columns(tuple(READING_COLUMNS))}) "
        f"SELECT {_jsonb_select(READING_COLUMNS.values())} "
        "ON CONFLICT DO NOTHING RETURNING id, site_id, message_id, timestamp), "
        f"new AS (SELECT *, {_pg_identity('message_id', 'timestamp')} AS identity FROM ins), "
        f"units AS ({child(BatteryUnitValue, UNIT_COLUMNS)}), "
        f"chargers AS ({child(ChargerValue, CHARGER_COLUMNS)}), "
        f"stale AS (INSERT INTO {_table(StaleMinute)} (site_id, minute_at) "
        f"SELECT DISTINCT site_id, {minute} FROM new ON CONFLICT DO NOTHING) "
        + (f", entry AS ({audit.insert_select_sql(STORED_STATUS_SQL)}) " if audited else "")
        # The timestamp identifies only a reading without a message_id (and costs a parse).
        + "SELECT site_id, message_id, CASE WHEN message_id IS NULL THEN timestamp END FROM new"
    )


EVENT_COLUMNS = {
    "site_id": "bigint",
    "event_id": "varchar",
    "timestamp": "timestamptz",
    "received_at": "timestamptz",
    "kind": "varchar",
    "severity": "varchar",
    "message": "text",
    "data": "jsonb",
}
