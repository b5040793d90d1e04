"""Ingest of readings, events and status reports: each item checked against the shared
schema, the poster's sites and the site's ratings; valid items stored in one batch."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from enexa.audit import services as audit
from enexa.core.errors import InvalidInput, NotFoundError
from enexa.registry.choices import EquipmentKind
from enexa.registry.models import Controller, Equipment, Site
from shared.errors import SchemaError
from shared.events import Event as EventSchema
from shared.fields import UNSTORABLE_TEXT, split_batch
from shared.status import StatusReport
from shared.telemetry import TelemetryReading as ReadingSchema

from .choices import TransitionReason
from .models import Event, SiteStatus
from .outages import reconcile_backfill
from .presence import after_contact, go_offline, last_seen_cache, touch_sites
from .reports import REPORTED_FIELDS, record_controller_versions, status_view
from .signals import events_stored
from .storage import (
    EVENT_COLUMNS,
    adapt_ts,
    insert_ignoring_duplicates,
    reading_key,
    store_readings,
)

# How long this process trusts what it last saw of a site (ratings, code, its online state)
# before asking the database again: a write per reading for last_seen would be the hot path's
# most contended statement.
CACHE_TTL_S = 10.0


@dataclass
class IngestResult:
    """Counts of one ingest call, in the contract's response shape."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Whether the call's audit entry was written with the readings (ingest_readings' `call`).
    audited: bool = False

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


def clear_caches() -> None:
    """Forget what this process cached about sites (tests; after registry changes)."""
    _ratings_cache.clear()
    last_seen_cache.clear()


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


# What bounds a power the registry has no rating for: everything at a site draws from its grid
# connection and its battery, so no asset (and no sum of chargers) carries more than both.
SITE_BASIS = "what the site can carry, grid connection plus battery"


def check_ratings(reading: ReadingSchema, site: SiteRatings) -> dict[str, list[str]]:
    """Field errors for powers beyond a sane multiple of the site's ratings. An asset the
    registry has no rating for (an unknown id, or no power spec) is bounded by what holds it:
    a battery unit by the battery system, a charger or the battery by the whole site; the
    chargers together by the whole site too. (Messages are built only for a power refused:
    this runs for every reading.)"""
    errors: dict[str, list[str]] = {}
    factor = settings.ENEXA_TELEMETRY_POWER_FACTOR

    def over(value: float | None, rating: float | None) -> bool:
        return value is not None and rating is not None and abs(value) > rating * factor

    def refuse(name: str, value: float | None, rating: float, basis: str = "the rating") -> None:
        errors.setdefault(name, []).append(
            f"{value:g} kW is implausible: more than {factor:g} x {basis} ({rating:g} kW)."
        )

    site_kw = site.grid_kw + (site.battery_kw or 0.0)
    battery_kw = site.battery_kw or site_kw
    battery, grid = reading.battery, reading.grid
    if battery is not None:
        if over(battery.power_kw, battery_kw):
            basis = "the rating" if site.battery_kw else SITE_BASIS
            refuse("battery.power_kw", battery.power_kw, battery_kw, basis)
        for i, unit in enumerate(battery.units):
            rating = site.units_kw.get(unit.id)
            if over(unit.power_kw, rating or battery_kw):
                unit_basis = "the battery's rating" if site.battery_kw else SITE_BASIS
                basis = "the rating" if rating else f"{unit_basis} (no rating for {unit.id} here)"
                refuse(f"battery.units.{i}.power_kw", unit.power_kw, rating or battery_kw, basis)
    if grid is not None:
        if over(grid.import_kw, site.grid_kw):
            refuse("grid.import_kw", grid.import_kw, site.grid_kw)
        if over(grid.export_kw, site.grid_kw):
            refuse("grid.export_kw", grid.export_kw, site.grid_kw)
    for i, charger in enumerate(reading.chargers):
        rating = site.chargers_kw.get(charger.id)
        if over(charger.power_kw, rating or site_kw):
            basis = "the rating" if rating else f"{SITE_BASIS} (no rating for {charger.id} here)"
            refuse(f"chargers.{i}.power_kw", charger.power_kw, rating or site_kw, basis)
    if not errors:
        total = sum(c.power_kw for c in reading.chargers if c.power_kw is not None)
        if total and over(total, site_kw):
            refuse("chargers", total, site_kw, f"{SITE_BASIS}, for their sum")
    return errors


def ingest_readings(
    poster: Poster, payload: Any, *, now: datetime | None = None, call: audit.Call | None = None
) -> IngestResult:
    """Validate and store one reading or a batch `{"items": [...]}` for the caller.

    Each item is checked against the shared schema, the caller's sites and the site's ratings;
    valid items are stored even when others are rejected; a reading already stored (same
    message_id, or same timestamp without one) counts as a duplicate. Raises InvalidInput for a
    malformed envelope or a batch above ENEXA_TELEMETRY_MAX_BATCH.

    With `call`, the call's audit entry is written with the readings when there are any to
    store (`audited` in the result says so)."""
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
        unique = reading_key(site.pk, reading.message_id, reading.timestamp)
        if unique in valid:  # the same reading twice in one batch
            result.duplicate += 1
            continue
        valid[unique] = (index, reading, site.pk)
    if valid:
        inserted = store_readings(list(valid.values()), now, call)
        result.audited = call is not None
        result.accepted = len(inserted)
        result.duplicate += len(valid) - len(inserted)
        after_contact({pk for _, _, pk in valid.values()}, now, TransitionReason.TELEMETRY)
        reconcile_backfill([valid[k] for k in inserted], now)
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
            adapt_ts(event.timestamp),
            adapt_ts(now),
            event.kind,
            event.severity,
            event.message,
            json.dumps(event.data),
        )
    if valid:
        inserted = insert_ignoring_duplicates(Event, EVENT_COLUMNS, list(valid.values()), ("id",))
        result.accepted = len(inserted)
        result.duplicate += len(valid) - len(inserted)
        after_contact({pk for pk, _ in valid}, now, TransitionReason.EVENT)
        if inserted:
            # Alerts re-check the rules these events bear on (on the worker, not here).
            kinds = {row[4] for row in valid.values()}
            site_pks = {pk for pk, _ in valid}
            transaction.on_commit(lambda: events_stored.send(Event, site_pks=site_pks, kinds=kinds))
    return result


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
        record_controller_versions(controller, report)
    status = SiteStatus.objects.select_related("site").get(site_id=ratings.pk)
    return status_view(status.site, status, now=now)


def _reporting_controller(poster: Poster, site_pk: int, code: str | None) -> Controller | None:
    if poster.controller_pk is not None:
        return Controller.objects.filter(pk=poster.controller_pk).first()
    if code:
        return Controller.objects.filter(site_id=site_pk, code=code).first()
    return None
