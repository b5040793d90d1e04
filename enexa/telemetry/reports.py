"""A site's status as reported and shown: online as read, the status view, the versions a
status report (or Amperio's health) records, and the gateway health polled from Amperio."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from enexa.registry.models import Controller, Site
from shared.fields import format_timestamp, parse_timestamp
from shared.status import StatusReport

from .models import SiteStatus
from .signals import gateway_health_recorded


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
        "gateway": status.gateway_health if status else None,
    }


# What a status report (or Amperio's health, after an outage) sets on the site's status.
REPORTED_FIELDS = ("mode", "config_version", "firmware_version", "modbus_link_up", "buffer_depth")


def record_controller_versions(controller: Controller, report: StatusReport) -> None:
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


GATEWAY_HEALTH_BATCH = 500
# Amperio's health is remote input: only values of the expected type are kept, text is capped.
GATEWAY_TEXT_MAX = 32


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and 0 <= number < 2**31 else None


def _text(value: Any) -> str | None:
    return value[:GATEWAY_TEXT_MAX] if isinstance(value, str) and value else None


def gateway_health_summary(site: Any, fleet_status: Any, at: datetime) -> dict[str, Any]:
    """One site's entry of Amperio's `GET /v1/health` (`None`: the answer did not list it),
    flattened into what `SiteStatus.gateway_health` keeps. A single gateway's answer has no
    per-site status; its overall `fleet_status` stands for the site."""
    summary: dict[str, Any] = {
        "status": "not_reported",
        "modbus_link_up": None,
        "watchdog_beating": None,
        "mode": None,
        "autonomy": None,
        "buffer_depth": None,
        "unconfirmed_commands": None,
        "last_report_at": None,
        "last_report_age_s": None,
        "at": format_timestamp(at),
    }
    if not isinstance(site, dict):
        return summary

    def part(name: str) -> dict[str, Any]:
        value = site.get(name)
        return value if isinstance(value, dict) else {}

    status = site.get("status", fleet_status)
    last_report = (
        parse_timestamp(site.get("last_report_at")) if site.get("last_report_at") else None
    )
    age = _number(site.get("last_report_age_s"))
    summary.update(
        status="ok" if status == "ok" else "degraded",
        modbus_link_up=_bool(part("modbus").get("link_up")),
        watchdog_beating=_bool(part("watchdog").get("beating")),
        mode=_text(site.get("mode")),
        autonomy=_text(site.get("autonomy")),
        buffer_depth=_count(part("buffer").get("depth")),
        unconfirmed_commands=_count(site.get("unconfirmed_commands")),
        last_report_at=format_timestamp(last_report) if last_report else None,
        last_report_age_s=round(age, 1) if age is not None else None,
    )
    return summary


def record_gateway_health(health: dict[str, Any], *, now: datetime | None = None) -> int:
    """Store each known site's gateway health from Amperio's `GET /v1/health` answer (a site
    it did not list is `not_reported`); returns how many sites were recorded."""
    now = now or timezone.now()
    sites = health.get("sites") if isinstance(health.get("sites"), dict) else {}
    codes = dict(Site.objects.values_list("pk", "code"))
    # In bulk (thousands of sites every 30 s): the missing rows made, then only these two
    # fields written, so a status report or presence change landing meanwhile keeps its own.
    SiteStatus.objects.bulk_create([SiteStatus(site_id=pk) for pk in codes], ignore_conflicts=True)
    statuses = list(SiteStatus.objects.only("pk", "site_id"))
    for status in statuses:
        code = codes.get(status.site_id, "")
        status.gateway_health = gateway_health_summary(sites.get(code), health.get("status"), now)
        status.gateway_health_at = now
    SiteStatus.objects.bulk_update(
        statuses, ["gateway_health", "gateway_health_at"], batch_size=GATEWAY_HEALTH_BATCH
    )
    site_pks = {status.site_id for status in statuses}
    transaction.on_commit(
        lambda: gateway_health_recorded.send(SiteStatus, site_pks=site_pks, at=now)
    )
    return len(statuses)


def poll_gateway_health(*, now: datetime | None = None) -> dict[str, Any]:
    """Ask Amperio for every site's gateway health and store it (beat, on the worker).
    Returns `{"result": "recorded" | "unreachable" | "skipped", "sites": <count>}`; when Amperio
    does not answer, what was stored stays, its `gateway_health_at` telling its age."""
    # Imported here: dispatch's services (the Amperio client) import telemetry's models.
    from enexa.dispatch.services import fetch_amperio_health

    result, health = fetch_amperio_health()
    if health is None:
        return {"result": result, "sites": 0}
    return {"result": result, "sites": record_gateway_health(health, now=now)}
