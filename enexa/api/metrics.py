"""`GET /metrics`: the Prometheus text format, behind a bearer token when ENEXA_METRICS_TOKEN
is set. The counters of enexa.core.metrics, then figures read from the database at scrape time
(commands per status, the delivery queue and its retries, delivery attempts per outcome,
sites online, the buffers the gateways report)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from enexa.core.metrics import counted_metrics
from enexa.dispatch.choices import CommandStatus
from enexa.dispatch.models import Command, DeliveryAttempt
from enexa.telemetry.models import SiteStatus
from shared.metrics import refusal

logger = logging.getLogger(__name__)


class DatabaseFigures(Collector):
    """What the database says at scrape time; `enexa_metrics_database_up` 0 when it cannot."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "enexa_metrics_database_up", "1 when the figures below could be read."
        )
        try:
            families = list(self._families())
        except DatabaseError:
            logger.warning("metrics: the database figures are unavailable", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        now = timezone.now()
        commands = GaugeMetricFamily(
            "enexa_commands", "Commands by status (their outcome once final).", labels=["status"]
        )
        counts = dict(Command.objects.values_list("status").annotate(n=Count("id")))
        for status in CommandStatus.values:
            commands.add_metric([status], counts.get(status, 0))
        yield commands
        waiting = Command.objects.filter(status=CommandStatus.UNDELIVERED).aggregate(
            depth=Count("id"), oldest=Min("issued_at")
        )
        depth = GaugeMetricFamily(
            "enexa_delivery_queue_depth", "Commands stored and not yet accepted by Amperio."
        )
        depth.add_metric([], waiting["depth"])
        yield depth
        age = GaugeMetricFamily(
            "enexa_delivery_queue_oldest_age_seconds",
            "Age of the oldest undelivered command (0 when none waits).",
        )
        oldest = waiting["oldest"]
        age.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
        yield age
        attempts = CounterMetricFamily(
            "enexa_delivery_attempts",
            "Delivery attempts to Amperio, by outcome.",
            labels=["outcome"],
        )
        for outcome, n in DeliveryAttempt.objects.values_list("outcome").annotate(n=Count("id")):
            attempts.add_metric([outcome], n)
        yield attempts
        retried = Command.objects.filter(delivery_attempts__gt=1).aggregate(
            tries=Sum("delivery_attempts"), commands=Count("id")
        )
        retries = CounterMetricFamily(
            "enexa_delivery_retries", "Delivery attempts beyond each command's first."
        )
        retries.add_metric([], (retried["tries"] or 0) - retried["commands"])
        yield retries
        yield from self._sites()

    def _sites(self) -> Iterator[Metric]:
        sites = GaugeMetricFamily("enexa_sites", "Sites by connectivity.", labels=["state"])
        counts = SiteStatus.objects.aggregate(
            n_online=Count("pk", filter=Q(online=True)),
            n_offline=Count("pk", filter=Q(online=False)),
        )
        for state in ("online", "offline"):
            sites.add_metric([state], counts[f"n_{state}"])
        yield sites
        buffers = GaugeMetricFamily(
            "enexa_site_buffer_depth",
            "Readings and events waiting in a gateway's outbox, as it last reported.",
            labels=["site"],
        )
        reported = SiteStatus.objects.filter(buffer_depth__isnull=False).values_list(
            "site__code", "buffer_depth"
        )
        for code, depth in reported:
            buffers.add_metric([code], depth)
        yield buffers


def metrics_text() -> bytes:
    """Every figure in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseFigures())
    return counted_metrics() + generate_latest(registry)


def metrics(request: HttpRequest) -> HttpResponse:
    """`GET /metrics` (a plain Django view: outside /v1/, no DRF, no audit row per scrape)."""
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET"})
    refused = refusal(request.headers.get("Authorization", ""), settings.ENEXA_METRICS_TOKEN)
    if refused is not None:
        return HttpResponse(**refused)
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
