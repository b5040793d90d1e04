"""Online and offline: contact marks a site seen (and back online, with recovery), silence
marks it offline and opens an outage report."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .choices import TransitionReason
from .models import OutageReport, SiteStatus, SiteStatusTransition, TelemetryReading
from .outages import reconcile_outage, telemetry_interval_s
from .signals import site_came_online, site_went_offline

logger = logging.getLogger(__name__)


LAST_SEEN_WRITE_EVERY_S = 2.0


last_seen_cache: dict[int, float] = {}


def after_contact(site_pks: set[int], now: datetime, reason: str) -> None:
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
        if not force and clock - last_seen_cache.get(site_pk, -1e9) < LAST_SEEN_WRITE_EVERY_S:
            continue
        if not SiteStatus.objects.filter(site_id=site_pk, online=True).update(last_seen_at=now):
            come_online(site_pk, now, reason)
        last_seen_cache[site_pk] = clock


def come_online(site_pk: int, now: datetime, reason: str) -> OutageReport | None:
    """Mark the site online (once, however many requests race) and, after an outage, close its
    outage report and reconcile the readings; what needs Amperio (its health, the outcomes of
    open commands, redelivery) is enqueued for the worker, never run in this request."""
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
        transaction.on_commit(
            lambda: site_came_online.send(SiteStatus, site_pk=site_pk, at=now, reason=reason)
        )
    if report is not None:
        from . import tasks  # tasks call into this module's callers: imported when needed

        reconcile_outage(report, now=now)
        tasks.recover_after_outage.delay_on_commit(report.pk)
    return report


def go_offline(site_pk: int, now: datetime, reason: str, *, cutoff: datetime | None = None) -> bool:
    """Mark the site offline (once) and open an outage report; False when it already was
    offline (or, with `cutoff`, was heard from since)."""
    last_seen_cache.pop(site_pk, None)
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
        transaction.on_commit(
            lambda: site_went_offline.send(SiteStatus, site_pk=site_pk, at=now, reason=reason)
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
    last_seen_cache.clear()
    went = []
    for site_pk, code in SiteStatus.objects.filter(
        online=True, last_seen_at__lt=cutoff
    ).values_list("site_id", "site__code"):
        if go_offline(site_pk, now, TransitionReason.SILENCE, cutoff=cutoff):
            went.append(code)
    return went
