"""A site's status as reported and shown: online as read, the status view, and the versions
a status report (or Amperio's health) records."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from enexa.registry.models import Controller, Site
from shared.fields import format_timestamp
from shared.status import StatusReport

from .models import SiteStatus


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
