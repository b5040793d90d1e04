"""Ingest of readings, status reports and events; online/offline tracking; recovery after an
outage (redelivery and a reconciliation report per outage).

The ingest hot path validates with the shared wire schema and writes a batch with one
`INSERT ... ON CONFLICT DO NOTHING RETURNING` per table, so duplicates are refused by the
database's unique constraints and the counts are exact (see docs/telemetry.md)."""

# Raw SQL here interpolates only table and column names from code; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from enexa.core.errors import InvalidInput, NotFoundError
from enexa.core.sql import run_prepared
from enexa.registry.choices import EquipmentKind
from enexa.registry.models import Controller, Equipment, Site
from shared.errors import SchemaError
from shared.events import Event as EventSchema
from shared.fields import UNSTORABLE_TEXT, format_timestamp, split_batch
from shared.status import StatusReport
from shared.telemetry import TelemetryReading as ReadingSchema

from .choices import TransitionReason
from .models import (
    BatteryUnitValue,
    ChargerValue,
    Event,
    OutageReport,
    SiteStatus,
    SiteStatusTransition,
    TelemetryReading,
)

logger = logging.getLogger(__name__)

# How long this process trusts what it last saw of a site (ratings, code, its online state)
# before asking the database again: a write per reading for last_seen would be the hot path's
# most contended statement.
CACHE_TTL_S = 10.0
LAST_SEEN_WRITE_EVERY_S = 2.0


# --- results ----------------------------------------------------------------------------------


@dataclass
class IngestResult:
    """Counts of one ingest call, in the contract's response shape."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, key: Any, errors: dict[str, list[str]]) -> None:
        self.rejected += 1
        # A key that is not storable text is not echoed: a lone surrogate cannot be encoded.
        echo = key if isinstance(key, str) and not UNSTORABLE_TEXT.search(key) else None
        self.errors.append({"index": index, "message_id": echo, "errors": errors})

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "errors": self.errors,
        }

    @property
    def all_rejected(self) -> bool:
        return self.rejected > 0 and self.accepted == 0 and self.duplicate == 0


# --- who may post for which site, and the site's ratings -----------------------------------------


@dataclass(frozen=True)
class SiteRatings:
    """A site's power ratings as the registry has them, for the plausibility check."""

    pk: int
    code: str
    grid_kw: float
    battery_kw: float | None
    units_kw: dict[str, float]
    chargers_kw: dict[str, float]


_ratings_cache: dict[str, tuple[float, SiteRatings | None]] = {}
_last_seen_cache: dict[int, float] = {}


def clear_caches() -> None:
    """Forget what this process cached about sites (tests; after registry changes)."""
    _ratings_cache.clear()
    _last_seen_cache.clear()


def _load_ratings(code: str) -> SiteRatings | None:
    site = Site.objects.filter(code=code).values_list("pk", "grid_connection_limit_kw").first()
    if site is None:
        return None
    battery_kw = None
    units: dict[str, float] = {}
    chargers: dict[str, float] = {}
    for kind, eq_code, max_kw, charge_kw, discharge_kw in Equipment.objects.filter(
        site_id=site[0]
    ).values_list("kind", "code", "max_power_kw", "max_charge_kw", "max_discharge_kw"):
        rating = max(v for v in (max_kw, charge_kw, discharge_kw, 0.0) if v is not None)
        if not rating:
            continue
        if kind == EquipmentKind.BATTERY_SYSTEM:
            battery_kw = rating
        elif kind == EquipmentKind.BATTERY_UNIT:
            units[eq_code] = rating
        elif kind == EquipmentKind.CHARGER:
            chargers[eq_code] = rating
    if battery_kw is None and units:
        battery_kw = sum(units.values())
    return SiteRatings(site[0], code, site[1], battery_kw, units, chargers)


def site_ratings(code: str) -> SiteRatings | None:
    """The ratings of the site with this code (cached briefly), None when there is none."""
    now = time.monotonic()
    cached = _ratings_cache.get(code)
    if cached is not None and cached[0] > now:
        return cached[1]
    ratings = _load_ratings(code)
    _ratings_cache[code] = (now + CACHE_TTL_S, ratings)
    return ratings


@dataclass(frozen=True)
class Poster:
    """Who posts, as plain values the view works out: whether it may post for a site (by
    primary key) and, for a controller key, its controller."""

    may_post_for: Callable[[int], bool]
    controller_pk: int | None = None


class PostingScope:
    """Which sites a poster may post readings, status and events for; a batch asks once per
    site, not once per item."""

    def __init__(self, poster: Poster):
        self.poster = poster
        self._allowed: dict[int, bool] = {}

    def allows(self, site: SiteRatings) -> bool:
        if site.pk not in self._allowed:
            self._allowed[site.pk] = self.poster.may_post_for(site.pk)
        return self._allowed[site.pk]

    def site(self, code: str) -> SiteRatings | None:
        """The site when the caller may post for it; None for unknown and foreign sites alike."""
        ratings = site_ratings(code)
        return ratings if ratings is not None and self.allows(ratings) else None


NOT_YOUR_SITE = "Unknown site, or not a site you may post for."


def _check_power(
    errors: dict[str, list[str]],
    name: str,
    value: float | None,
    rating: float | None,
    basis: str = "the rating",
) -> None:
    if value is None or rating is None:
        return
    factor = settings.ENEXA_TELEMETRY_POWER_FACTOR
    if abs(value) > rating * factor:
        errors.setdefault(name, []).append(
            f"{value:g} kW is implausible: more than {factor:g} x {basis} ({rating:g} kW)."
        )


# What bounds a power the registry has no rating for: everything at a site draws from its grid
# connection and its battery, so no asset (and no sum of chargers) carries more than both.
SITE_BASIS = "what the site can carry, grid connection plus battery"


def check_ratings(reading: ReadingSchema, site: SiteRatings) -> dict[str, list[str]]:
    """Field errors for powers beyond a sane multiple of the site's ratings. An asset the
    registry has no rating for (an unknown id, or no power spec) is bounded by what holds it:
    a battery unit by the battery system, a charger or the battery by the whole site; the
    chargers together by the whole site too."""
    errors: dict[str, list[str]] = {}
    site_kw = site.grid_kw + (site.battery_kw or 0.0)
    battery_kw = site.battery_kw or site_kw
    if reading.battery is not None:
        basis = "the rating" if site.battery_kw else SITE_BASIS
        _check_power(errors, "battery.power_kw", reading.battery.power_kw, battery_kw, basis)
        unit_basis = "the battery's rating" if site.battery_kw else SITE_BASIS
        for i, unit in enumerate(reading.battery.units):
            rating = site.units_kw.get(unit.id)
            _check_power(
                errors,
                f"battery.units.{i}.power_kw",
                unit.power_kw,
                rating or battery_kw,
                "the rating" if rating else f"{unit_basis} (no rating for {unit.id} here)",
            )
    if reading.grid is not None:
        _check_power(errors, "grid.import_kw", reading.grid.import_kw, site.grid_kw)
        _check_power(errors, "grid.export_kw", reading.grid.export_kw, site.grid_kw)
    for i, charger in enumerate(reading.chargers):
        rating = site.chargers_kw.get(charger.id)
        _check_power(
            errors,
            f"chargers.{i}.power_kw",
            charger.power_kw,
            rating or site_kw,
            "the rating" if rating else f"{SITE_BASIS} (no rating for {charger.id} here)",
        )
    if not errors:
        total = sum(c.power_kw for c in reading.chargers if c.power_kw is not None)
        _check_power(errors, "chargers", total or None, site_kw, f"{SITE_BASIS}, for their sum")
    return errors


# --- raw SQL helpers ----------------------------------------------------------------------------


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(connection.ops.quote_name(n) for n in names)


def _adapt_ts(value: datetime) -> Any:
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


# --- telemetry ----------------------------------------------------------------------------------

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
}
UNIT_COLUMNS = {
    "reading_id": "bigint",
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
    "charger_code": "varchar",
    "power_kw": "float8",
    "status": "varchar",
    "energy_kwh": "float8",
}


def _reading_key(site_pk: int, message_id: str | None, ts: datetime) -> tuple:
    """What makes a reading unique: (site, message_id), else (site, timestamp)."""
    return (site_pk, "m", message_id) if message_id else (site_pk, "t", ts)


def _returned_key(site_pk: int, message_id: str | None, ts: Any) -> tuple:
    """_reading_key of a reading the INSERT returned (its timestamp only counts without a
    message_id)."""
    return _reading_key(site_pk, message_id, None if message_id else as_utc(ts))


def _reading_row(site_pk: int, r: ReadingSchema, received_at: Any) -> tuple:
    battery, grid = r.battery, r.grid
    chargers_kw = [c.power_kw for c in r.chargers if c.power_kw is not None]
    return (
        site_pk,
        _adapt_ts(r.timestamp),
        r.message_id,
        received_at,
        r.backfilled,
        battery.soc_pct if battery else None,
        battery.power_kw if battery else None,
        grid.import_kw if grid else None,
        grid.export_kw if grid else None,
        grid.frequency_hz if grid else None,
        sum(chargers_kw) if chargers_kw else None,
    )


def ingest_readings(poster: Poster, payload: Any, *, now: datetime | None = None) -> IngestResult:
    """Validate and store one reading or a batch `{"items": [...]}` for the caller.

    Each item is checked against the shared schema, the caller's sites and the site's ratings;
    valid items are stored even when others are rejected; a reading already stored (same
    message_id, or same timestamp without one) counts as a duplicate. Raises InvalidInput for a
    malformed envelope or a batch above ENEXA_TELEMETRY_MAX_BATCH."""
    items = _split(payload)
    now = now or timezone.now()
    scope = PostingScope(poster)
    result = IngestResult()
    valid: dict[tuple, tuple[int, ReadingSchema, int]] = {}
    for index, item in enumerate(items):
        key = item.get("message_id") if isinstance(item, dict) else None
        try:
            reading = ReadingSchema.from_dict(item, now=now)
        except SchemaError as exc:
            result.reject(index, key, exc.errors)
            continue
        site = scope.site(reading.site_id)
        if site is None:
            result.reject(index, key, {"site_id": [NOT_YOUR_SITE]})
            continue
        errors = check_ratings(reading, site)
        if errors:
            result.reject(index, key, errors)
            continue
        unique = _reading_key(site.pk, reading.message_id, reading.timestamp)
        if unique in valid:  # the same reading twice in one batch
            result.duplicate += 1
            continue
        valid[unique] = (index, reading, site.pk)
    if valid:
        inserted = _store_readings(list(valid.values()), now)
        result.accepted = len(inserted)
        result.duplicate += len(valid) - len(inserted)
        _after_contact({pk for _, _, pk in valid.values()}, now, TransitionReason.TELEMETRY)
        _reconcile_backfill([valid[k] for k in inserted], now)
    return result


def _split(payload: Any) -> list[Any]:
    try:
        items, _ = split_batch(payload)
    except SchemaError as exc:
        raise InvalidInput("The batch is malformed.", exc.errors) from exc
    limit = settings.ENEXA_TELEMETRY_MAX_BATCH
    if len(items) > limit:
        raise InvalidInput(
            f"A batch holds at most {limit} items; this one has {len(items)}.",
            {"items": [f"At most {limit} items."]},
        )
    return items


def _unit_values(reading: ReadingSchema) -> list[tuple]:
    if reading.battery is None:
        return []
    return [
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


def _charger_values(reading: ReadingSchema) -> list[tuple]:
    return [(c.id, c.power_kw, c.status or "", c.energy_kwh) for c in reading.chargers]


def _store_readings(valid: list[tuple[int, ReadingSchema, int]], now: datetime) -> list[tuple]:
    """Insert the readings and their unit/charger rows; returns the keys of the new readings."""
    if connection.vendor == "postgresql":
        return _store_readings_postgresql(valid, now)
    received_at = _adapt_ts(now)
    rows = [_reading_row(site_pk, r, received_at) for _, r, site_pk in valid]
    by_key = {_reading_key(site_pk, r.message_id, r.timestamp): r for _, r, site_pk in valid}
    with transaction.atomic():
        returned = insert_ignoring_duplicates(
            TelemetryReading, READING_COLUMNS, rows, ("id", "site_id", "message_id", "timestamp")
        )
        keys = []
        unit_rows: list[tuple] = []
        charger_rows: list[tuple] = []
        for reading_id, site_pk, message_id, ts in returned:
            key = _returned_key(site_pk, message_id, ts)
            keys.append(key)
            reading = by_key[key]
            unit_rows.extend((reading_id, *v) for v in _unit_values(reading))
            charger_rows.extend((reading_id, *v) for v in _charger_values(reading))
        # A unit or charger listed twice in one reading keeps its first values.
        insert_ignoring_duplicates(BatteryUnitValue, UNIT_COLUMNS, unit_rows)
        insert_ignoring_duplicates(ChargerValue, CHARGER_COLUMNS, charger_rows)
    return keys


def _pg_identity(message_id: str, ts: str) -> str:
    """SQL for a reading's identity within its site (message_id, else timestamp), written once
    for both sides of the join below."""
    return f"coalesce('m' || {message_id}, 't' || extract(epoch from {ts})::text)"


def _store_readings_postgresql(
    valid: list[tuple[int, ReadingSchema, int]], now: datetime
) -> list[tuple]:
    """PostgreSQL: readings, units and chargers in ONE statement (data-modifying CTEs), run in
    autocommit, so a single reading costs one round trip and one commit.

    The new readings' ids come back from the first INSERT and are joined to their unit and
    charger rows by the readings' identity (site and message_id, else site and timestamp)."""
    rows, units, chargers = [], [], []
    for _, reading, site_pk in valid:
        row = _reading_row(site_pk, reading, now)
        rows.append(row)
        identity = (site_pk, reading.message_id, row[1])
        units.extend((*identity, *v) for v in _unit_values(reading))
        chargers.extend((*identity, *v) for v in _charger_values(reading))
    params = [json.dumps(part, default=_json_default) for part in (rows, units, chargers)]
    # Prepared: planning this statement was about 60% of its cost for one reading.
    returned = run_prepared(_insert_readings_sql(), params, fetch=True)
    return [_returned_key(site_pk, message_id, ts) for site_pk, message_id, ts in returned]


@functools.cache
def _insert_readings_sql() -> str:
    """The PostgreSQL statement of _store_readings_postgresql (built once per process)."""
    child_identity = _pg_identity("(e->>1)", "(e->>2)::timestamptz")

    def child(model, columns: dict[str, str]) -> str:
        return (
            f"INSERT INTO {_table(model)} ({_columns(tuple(columns))}) "
            f"SELECT new.id, {_jsonb_select(list(columns.values())[1:], offset=3)} "
            f"JOIN new ON new.site_id = (e->>0)::bigint AND new.identity = {child_identity} "
            "ON CONFLICT DO NOTHING"
        )

    return (
        f"WITH ins AS (INSERT INTO {_table(TelemetryReading)} "
        f"({_columns(tuple(READING_COLUMNS))}) "
        f"SELECT {_jsonb_select(READING_COLUMNS.values())} "
        "ON CONFLICT DO NOTHING RETURNING id, site_id, message_id, timestamp), "
        f"new AS (SELECT *, {_pg_identity('message_id', 'timestamp')} AS identity FROM ins), "
        f"units AS ({child(BatteryUnitValue, UNIT_COLUMNS)}), "
        f"chargers AS ({child(ChargerValue, CHARGER_COLUMNS)}) "
        "SELECT site_id, message_id, timestamp FROM new"
    )


# --- events -------------------------------------------------------------------------------------

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


def ingest_events(poster: Poster, payload: Any, *, now: datetime | None = None) -> IngestResult:
    """Store one event or a batch `{"items": [...]}` idempotently (by site and event_id).

    Same response shape as telemetry; an error's `message_id` is the item's `event_id`."""
    items = _split(payload)
    now = now or timezone.now()
    scope = PostingScope(poster)
    result = IngestResult()
    valid: dict[tuple[int, str], tuple] = {}
    for index, item in enumerate(items):
        key = item.get("event_id") if isinstance(item, dict) else None
        try:
            event = EventSchema.from_dict(item)
        except SchemaError as exc:
            result.reject(index, key, exc.errors)
            continue
        site = scope.site(event.site_id)
        if site is None:
            result.reject(index, key, {"site_id": [NOT_YOUR_SITE]})
            continue
        if (site.pk, event.event_id) in valid:
            result.duplicate += 1
            continue
        valid[(site.pk, event.event_id)] = (
            site.pk,
            event.event_id,
            _adapt_ts(event.timestamp),
            _adapt_ts(now),
            event.kind,
            event.severity,
            event.message,
            json.dumps(event.data),
        )
    if valid:
        inserted = insert_ignoring_duplicates(Event, EVENT_COLUMNS, list(valid.values()), ("id",))
        result.accepted = len(inserted)
        result.duplicate += len(valid) - len(inserted)
        _after_contact({pk for pk, _ in valid}, now, TransitionReason.EVENT)
    return result


# --- status and online/offline ------------------------------------------------------------------


def offline_after() -> timedelta:
    return timedelta(seconds=settings.ENEXA_OFFLINE_AFTER_S)


def is_online(status: SiteStatus | None, *, now: datetime | None = None) -> bool:
    """Online as read: marked online and heard from within the silence threshold."""
    if status is None or not status.online or status.last_seen_at is None:
        return False
    return status.last_seen_at >= (now or timezone.now()) - offline_after()


def status_view(site: Site, status: SiteStatus | None, *, now: datetime | None = None) -> dict:
    """The site's status as the API shows it."""

    def ts(value: datetime | None) -> str | None:
        return format_timestamp(value) if value else None

    return {
        "site_id": site.code,
        "online": is_online(status, now=now),
        "last_seen_at": ts(status.last_seen_at) if status else None,
        "reported_at": ts(status.reported_at) if status else None,
        "controller_id": (status.controller_code or None) if status else None,
        "mode": (status.mode or None) if status else None,
        "config_version": status.config_version if status else None,
        "firmware_version": (status.firmware_version or None) if status else None,
        "modbus_link_up": status.modbus_link_up if status else None,
        "buffer_depth": status.buffer_depth if status else None,
    }


# What a status report (or Amperio's health, after an outage) sets on the site's status.
REPORTED_FIELDS = ("mode", "config_version", "firmware_version", "modbus_link_up", "buffer_depth")


def record_status(poster: Poster, payload: Any, *, now: datetime | None = None) -> dict:
    """Apply a gateway's status report (`POST /v1/status`); returns the site's status view.

    A report older than the newest applied one only counts as contact. `online: false` is the
    gateway saying it goes away: the site is marked offline at once."""
    now = now or timezone.now()
    try:
        report = StatusReport.from_dict(payload)
    except SchemaError as exc:
        raise InvalidInput("The status report is invalid.", exc.errors) from exc
    ratings = PostingScope(poster).site(report.site_id)
    if ratings is None:
        raise NotFoundError(f"Site {report.site_id} not found.")
    if report.online:
        touch_sites({ratings.pk}, now, TransitionReason.STATUS, force=True)
    else:
        SiteStatus.objects.get_or_create(site_id=ratings.pk, defaults={"last_seen_at": now})
        SiteStatus.objects.filter(site_id=ratings.pk).update(last_seen_at=now)
        go_offline(ratings.pk, now, TransitionReason.REPORTED)
    controller = _reporting_controller(poster, ratings.pk, report.controller_id)
    reported_at = report.timestamp or now
    fields: dict[str, Any] = {"reported_at": reported_at}
    if controller is not None:
        fields["controller_code"] = controller.code
    for name in REPORTED_FIELDS:
        value = getattr(report, name)
        if value is not None:
            fields[name] = value
    fresh = SiteStatus.objects.filter(site_id=ratings.pk).exclude(reported_at__gt=reported_at)
    if fresh.update(**fields) and controller is not None:
        _record_controller_versions(controller, report)
    status = SiteStatus.objects.select_related("site").get(site_id=ratings.pk)
    return status_view(status.site, status, now=now)


def _reporting_controller(poster: Poster, site_pk: int, code: str | None) -> Controller | None:
    if poster.controller_pk is not None:
        return Controller.objects.filter(pk=poster.controller_pk).first()
    if code:
        return Controller.objects.filter(site_id=site_pk, code=code).first()
    return None


def _record_controller_versions(controller: Controller, report: StatusReport) -> None:
    if report.firmware_version:
        Controller.objects.filter(pk=controller.pk).exclude(
            firmware_version=report.firmware_version
        ).update(firmware_version=report.firmware_version)
    if report.config_version is None:
        return
    from enexa.configs.services import record_applied_version

    record_applied_version(controller.pk, report.config_version)


def site_status(site: Site) -> SiteStatus | None:
    return SiteStatus.objects.filter(site=site).first()


def _after_contact(site_pks: set[int], now: datetime, reason: str) -> None:
    """Readings or events arrived: the sites are seen (and back online if they were not)."""
    try:
        touch_sites(site_pks, now, reason)
    except Exception:  # a failed bookkeeping write must not fail stored readings
        logger.exception("updating last_seen of sites %s failed", sorted(site_pks))


def touch_sites(site_pks: set[int], now: datetime, reason: str, *, force: bool = False) -> None:
    """Record contact: last_seen_at = now, and a site that was offline comes back online.

    A process writes last_seen of a site at most every LAST_SEEN_WRITE_EVERY_S (unless forced),
    far below the offline silence, so busy sites do not serialise ingest on their status row."""
    clock = time.monotonic()
    for site_pk in site_pks:
        if not force and clock - _last_seen_cache.get(site_pk, -1e9) < LAST_SEEN_WRITE_EVERY_S:
            continue
        if not SiteStatus.objects.filter(site_id=site_pk, online=True).update(last_seen_at=now):
            come_online(site_pk, now, reason)
        _last_seen_cache[site_pk] = clock


def come_online(site_pk: int, now: datetime, reason: str) -> OutageReport | None:
    """Mark the site online (once, however many requests race) and, after an outage, recover:
    close its outage report, redeliver undelivered commands and reconcile the readings."""
    with transaction.atomic():
        status, created = SiteStatus.objects.get_or_create(
            site_id=site_pk, defaults={"online": True, "last_seen_at": now}
        )
        if not created and not SiteStatus.objects.filter(pk=status.pk, online=False).update(
            online=True, last_seen_at=now
        ):
            SiteStatus.objects.filter(pk=status.pk).update(last_seen_at=now)
            return None  # another request brought it online
        SiteStatusTransition.objects.create(site_id=site_pk, online=True, at=now, reason=reason)
        report = (
            OutageReport.objects.filter(site_id=site_pk, online_at__isnull=True)
            .order_by("-offline_at")
            .first()
        )
        if report is not None:
            report.online_at = now
            report.save(update_fields=["online_at"])
    if report is not None:
        recover_site(report, now=now)
    return report


def go_offline(site_pk: int, now: datetime, reason: str, *, cutoff: datetime | None = None) -> bool:
    """Mark the site offline (once) and open an outage report; False when it already was
    offline (or, with `cutoff`, was heard from since)."""
    _last_seen_cache.pop(site_pk, None)
    interval_s = telemetry_interval_s(site_pk)  # outside the transaction: it may read configs
    with transaction.atomic():
        still = SiteStatus.objects.filter(site_id=site_pk, online=True)
        if cutoff is not None:
            still = still.filter(last_seen_at__lt=cutoff)
        if not still.update(online=False):
            return False
        SiteStatusTransition.objects.create(site_id=site_pk, online=False, at=now, reason=reason)
        last_seen = SiteStatus.objects.filter(site_id=site_pk).values_list(
            "last_seen_at", flat=True
        )[0]
        newest = (
            TelemetryReading.objects.filter(site_id=site_pk, timestamp__lte=now)
            .order_by("-timestamp")
            .values_list("timestamp", flat=True)
            .first()
        )
        OutageReport.objects.create(
            site_id=site_pk,
            silent_since=newest or last_seen or now,
            offline_at=now,
            interval_s=interval_s,
        )
    logger.info("site %s offline (%s)", site_pk, reason)
    return True


def mark_offline_sites(*, now: datetime | None = None, silence_s: float | None = None) -> list[str]:
    """Mark offline every online site silent for `silence_s` (ENEXA_OFFLINE_AFTER_S); returns
    the codes of the sites that went offline now."""
    now = now or timezone.now()
    silence = timedelta(
        seconds=silence_s if silence_s is not None else settings.ENEXA_OFFLINE_AFTER_S
    )
    cutoff = now - silence
    _last_seen_cache.clear()
    went = []
    for site_pk, code in SiteStatus.objects.filter(
        online=True, last_seen_at__lt=cutoff
    ).values_list("site_id", "site__code"):
        if go_offline(site_pk, now, TransitionReason.SILENCE, cutoff=cutoff):
            went.append(code)
    return went


# --- recovery and outage reports ----------------------------------------------------------------


def telemetry_interval_s(site_pk: int) -> float:
    """The reading interval the site's gateway is configured for (configs, else the setting)."""
    try:
        from enexa.configs.services import effective_config_for

        controller = Controller.objects.filter(site_id=site_pk).order_by("pk").first()
        if controller is not None:
            value = effective_config_for(controller)["settings"]["telemetry"]["interval_s"]
            if value:
                return float(value)
    except Exception:  # noqa: BLE001 - configs not installed or not set up: use the default
        logger.debug("no configured telemetry interval for site %s", site_pk)
    return float(settings.ENEXA_TELEMETRY_INTERVAL_S)


def recover_site(report: OutageReport, *, now: datetime | None = None) -> OutageReport:
    """After an outage: the state the gateway reports now is the truth (status and telemetry
    already overwrite it); ask Amperio at once for the site's health and the outcomes of its
    open commands; redeliver still-valid commands, expire stale ones; reconcile.

    This runs in the request that brought the site back, as redelivery does (each Amperio call
    bounded by ENEXA_AMPERIO_TIMEOUT_S, and none after the first it does not answer)."""
    from enexa.dispatch.services import redeliver_undelivered

    site = Site.objects.get(pk=report.site_id)
    try:
        report.state_sync = sync_state(site)
    except Exception:  # recovery must not fail the request that brought the site back
        logger.exception("state sync of %s after its outage failed", site.code)
        report.state_sync = {"error": "state sync failed; see the log"}
    try:
        report.commands_redelivered = redeliver_undelivered(site, now=now)
    except Exception:  # recovery must not fail the request that brought the site back
        logger.exception("redelivery to %s after its outage failed", site.code)
        report.commands_redelivered = {"error": "redelivery failed; see the log"}
    report.save(update_fields=["state_sync", "commands_redelivered"])
    return reconcile_outage(report, now=now)


def _health_part(health: dict, section: str, name: str) -> Any:
    part = health.get(section)
    return part.get(name) if isinstance(part, dict) else None


def sync_state(site: Site) -> dict:
    """Take what Amperio says of the site now: command outcomes on the commands, its health
    (mode, applied configuration and firmware versions, Modbus link, buffer) on the site's
    status, as a status report would. Returns `{"health", "commands"}` for the outage report."""
    from enexa.dispatch.services import sync_from_amperio

    found = sync_from_amperio(site)
    health = found["health"]
    if health is None:
        return {"health": found["health_result"], "commands": found["commands"]}
    try:  # Amperio's answer is input too: checked as a status report is
        report = StatusReport.from_dict(
            {
                "site_id": site.code,
                "online": True,
                "mode": health.get("mode"),
                "config_version": health.get("config_version"),
                "firmware_version": health.get("firmware_version"),
                "modbus_link_up": _health_part(health, "modbus", "link_up"),
                "buffer_depth": _health_part(health, "buffer", "depth"),
            }
        )
    except SchemaError as exc:
        logger.warning("health of %s from Amperio refused: %s", site.code, exc.errors)
        return {"health": "invalid", "commands": found["commands"]}
    fields = {
        name: getattr(report, name) for name in REPORTED_FIELDS if getattr(report, name) is not None
    }
    SiteStatus.objects.filter(site=site).update(**fields)
    code = SiteStatus.objects.filter(site=site).values_list("controller_code", flat=True).first()
    controller = Controller.objects.filter(site=site, code=code).first() if code else None
    if controller is not None:
        _record_controller_versions(controller, report)
    return {"health": "synced", "commands": found["commands"]}


def _ticks_before(start: datetime, t: datetime, interval_s: float) -> int:
    """Expected reading times start + k*interval (k >= 1) strictly before t."""
    x = round((t - start).total_seconds() / interval_s, 6)
    return max(0, math.ceil(x) - 1)


def reconcile_outage(report: OutageReport, *, now: datetime | None = None) -> OutageReport:
    """Recompute expected vs received readings of the outage window, per bucket, with the
    backfilled ranges and the gaps that remain."""
    now = now or timezone.now()
    start, end = report.silent_since, report.online_at or now
    interval = report.interval_s
    rows = list(
        TelemetryReading.objects.filter(
            site_id=report.site_id, timestamp__gt=start, timestamp__lt=end
        )
        .order_by("timestamp")
        .values_list("timestamp", "backfilled")
    )
    report.readings_expected = _ticks_before(start, end, interval)
    report.readings_received = len(rows)
    report.readings_backfilled = sum(1 for _, b in rows if b)
    report.buckets = _buckets(start, end, interval, [ts for ts, _ in rows])
    report.gaps = _gaps(start, end, interval, [ts for ts, _ in rows])
    report.backfilled_ranges = _backfilled_ranges(rows, interval)
    report.reconciled_at = now
    report.save()
    return report


def _buckets(start: datetime, end: datetime, interval: float, stamps: list[datetime]) -> list:
    width = max(60.0, interval)
    duration = (end - start).total_seconds()
    while duration / width > 1000:  # keep a report readable for long outages
        width *= 60 if width < 3600 else 24
    out = []
    i = 0
    a = start
    while a < end:
        b = min(a + timedelta(seconds=width), end)
        received = 0
        while i < len(stamps) and stamps[i] < b:
            received += 1
            i += 1
        expected = _ticks_before(start, b, interval) - _ticks_before(start, a, interval)
        if b == end:  # the tick at exactly `end` belongs after the window
            expected = _ticks_before(start, end, interval) - _ticks_before(start, a, interval)
        out.append({"start": format_timestamp(a), "expected": expected, "received": received})
        a = b
    return out


def _gaps(start: datetime, end: datetime, interval: float, stamps: list[datetime]) -> list:
    out = []
    step = timedelta(seconds=interval)
    prev = start
    for ts in stamps:
        missing = round((ts - prev).total_seconds() / interval) - 1
        if missing >= 1:
            out.append(
                {
                    "from": format_timestamp(prev + step),
                    "to": format_timestamp(prev + step * missing),
                    "missing": missing,
                }
            )
        prev = ts
    missing = _ticks_before(prev, end, interval)
    if missing >= 1:
        out.append(
            {
                "from": format_timestamp(prev + step),
                "to": format_timestamp(prev + step * missing),
                "missing": missing,
            }
        )
    return out


def _backfilled_ranges(rows: list[tuple[datetime, bool]], interval: float) -> list:
    out: list[dict] = []
    run: list[datetime] = []
    for ts, backfilled in rows:
        if backfilled and run and (ts - run[-1]).total_seconds() <= 1.5 * interval:
            run.append(ts)
            continue
        if run:
            out.append(_range(run))
        run = [ts] if backfilled else []
    if run:
        out.append(_range(run))
    return out


def _range(run: list[datetime]) -> dict:
    return {"from": format_timestamp(run[0]), "to": format_timestamp(run[-1]), "count": len(run)}


def _reconcile_backfill(stored: list[tuple[int, ReadingSchema, int]], now: datetime) -> None:
    """Backfilled readings just stored: recompute the closed outage reports they fall into."""
    spans: dict[int, list[datetime]] = {}
    for _, reading, site_pk in stored:
        if reading.backfilled:
            spans.setdefault(site_pk, []).append(reading.timestamp)
    for site_pk, stamps in spans.items():
        for report in OutageReport.objects.filter(
            site_id=site_pk,
            online_at__isnull=False,
            silent_since__lt=max(stamps),
            online_at__gt=min(stamps),
        ):
            reconcile_outage(report, now=now)


def reconcile_outages(*, since: datetime | None = None, now: datetime | None = None) -> int:
    """Recompute every outage report closed since `since` (default: the raw retention)."""
    now = now or timezone.now()
    since = since or now - timedelta(days=settings.ENEXA_TELEMETRY_RAW_RETENTION_DAYS)
    count = 0
    for report in OutageReport.objects.filter(online_at__gte=since):
        reconcile_outage(report, now=now)
        count += 1
    return count


def outage_view(report: OutageReport) -> dict:
    """An outage report as the API shows it."""
    return {
        "silent_since": format_timestamp(report.silent_since),
        "offline_at": format_timestamp(report.offline_at),
        "online_at": format_timestamp(report.online_at) if report.online_at else None,
        "interval_s": report.interval_s,
        "readings_expected": report.readings_expected,
        "readings_received": report.readings_received,
        "readings_backfilled": report.readings_backfilled,
        "readings_missing": max(0, report.readings_expected - report.readings_received),
        "buckets": report.buckets,
        "backfilled_ranges": report.backfilled_ranges,
        "gaps": report.gaps,
        "commands": report.commands_redelivered,
        "state_sync": report.state_sync,
        "reconciled_at": format_timestamp(report.reconciled_at) if report.reconciled_at else None,
    }
