"""After an outage: recovery (state sync with Amperio, redelivery) and the reconciliation
report of what arrived for the silent time."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from enexa.registry.models import Controller, Site
from shared.errors import SchemaError
from shared.fields import format_timestamp
from shared.status import StatusReport
from shared.telemetry import TelemetryReading as ReadingSchema

from .models import OutageReport, SiteStatus, TelemetryReading
from .reports import REPORTED_FIELDS, record_controller_versions

logger = logging.getLogger(__name__)


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


def recover_site_by_id(report_id: int) -> OutageReport | None:
    """`recover_site` of the outage report `report_id` (None when it is gone)."""
    report = OutageReport.objects.filter(pk=report_id).first()
    return recover_site(report) if report is not None else None


def recover_site(report: OutageReport, *, now: datetime | None = None) -> OutageReport:
    """After an outage: the state the gateway reports now is the truth (status and telemetry
    already overwrite it); ask Amperio for the site's health and the outcomes of its open
    commands; re-plan a site the optimizer controls (its new schedule supersedes the stale
    ones); redeliver still-valid commands, expire stale ones.

    This runs on the worker, enqueued by the contact that brought the site back (each Amperio
    call bounded by ENEXA_AMPERIO_TIMEOUT_S, and none after the first it does not answer)."""
    # Imported here: only recovery needs them, and the optimizer itself reads telemetry.
    from enexa.dispatch.services import redeliver_undelivered
    from enexa.optimizer.services import replan_after_outage

    site = Site.objects.get(pk=report.site_id)
    try:
        report.state_sync = sync_state(site)
    except Exception:  # a failed sync is recorded on the report; the redelivery still runs
        logger.exception("state sync of %s after its outage failed", site.code)
        report.state_sync = {"error": "state sync failed; see the log"}
    # Seed recovery steps 2-3: a site under the optimizer's control gets a new plan from its
    # newest reading (step 1: status and telemetry already made it the truth), which
    # supersedes its stale schedules, rather than having them re-sent as they were.
    try:
        replanned = replan_after_outage(site, now=now)
    except Exception:  # a failed re-plan is recorded; the redelivery below still runs
        logger.exception("re-plan of %s after its outage failed", site.code)
        replanned = {"plan": None, "error": "re-plan failed; see the log"}
    try:
        report.commands_redelivered = redeliver_undelivered(site, now=now)
    except Exception:  # a failed redelivery is recorded on the report; reconciliation still runs
        logger.exception("redelivery to %s after its outage failed", site.code)
        report.commands_redelivered = {"error": "redelivery failed; see the log"}
    if replanned is not None:
        report.commands_redelivered["replanned"] = replanned
    # Only these fields: the readings part was reconciled when the site came back and is
    # kept up to date as backfill arrives, concurrently; saving it from here could put back
    # counts read before the latest backfill was stored.
    report.save(update_fields=["state_sync", "commands_redelivered"])
    return report


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
        record_controller_versions(controller, report)
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


def reconcile_backfill(stored: list[tuple[int, ReadingSchema, int]], now: datetime) -> None:
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
