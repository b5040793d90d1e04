"""The dashboard on the server: the fleet page for 500 sites (target < 300 ms), its table's poll
(the fragment, and the same poll answered 304 when nothing changed) and a site's chart data for
a week at 15-minute resolution (target < 100 ms), each through the whole Django stack with a
logged-in session, on a throw-away test database whose aggregates are built as the worker
builds them (the chart reads them). The floor is a bare Django view answered by the same client
in the same run; the load average is taken before and after.

Results: bench/results/dashboard-<database>.json (sqlite by default, postgresql with
DATABASE_URL naming one). `python -m bench dashboard`."""

import json
import os
import statistics
import time
from datetime import timedelta
from pathlib import Path

from django.http import HttpResponse
from django.urls import include, path

from bench.testdb import throwaway_database

RESULTS_DIR = Path(__file__).parent / "results"
SITES = int(os.environ.get("BENCH_DASHBOARD_SITES", "500"))
REQUESTS = int(os.environ.get("BENCH_DASHBOARD_REQUESTS", "20"))
READING_INTERVAL_S = 5
FLEET_TARGET_MS = 300.0
CHART_WEEK_TARGET_MS = 100.0


def bare(request):
    """The floor: what the same client and middleware cost for a view that does nothing."""
    return HttpResponse(b"ok")


# This module is the bench's URL configuration (the project's URLs and the bare view), filled
# in by main() once Django is set up.
urlpatterns: list = []


def _measure(
    client, url: str, requests: int = REQUESTS, before=None, headers=None, status: int = 200
) -> dict:
    """`before`, when given, runs ahead of each request, outside its time and its queries;
    `headers` go with each request, which must answer `status`."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url, headers=headers)  # warm caches (templates, query plans) outside the figures
    timings, cpu = [], []
    queries = 0
    for _ in range(requests):
        if before is not None:
            before()
        with CaptureQueriesContext(connection) as captured:
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url, headers=headers)
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        queries += len(captured)
        assert response.status_code == status, response.status_code
    timings.sort()
    return {
        "requests": requests,
        "mean_ms": round(statistics.mean(timings), 2),
        "median_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[max(0, int(len(timings) * 0.95) - 1)], 2),
        # This process's CPU time: on a busy machine (see the load average) wall time also
        # counts waiting for a core; a PostgreSQL server's own work is in wall time only.
        "median_cpu_ms": round(statistics.median(cpu), 2),
        "queries_per_request": round(queries / requests, 2),
        "bytes": len(response.content),
    }


def _fleet(now) -> None:
    """SITES sites, each with a status and its last online/offline transition two days ago, a
    few readings with two chargers, an alarm, and a controller (whose configuration version 1
    its creation signal makes); one release newer than what they run."""
    from enexa.firmware.models import FirmwareRelease
    from enexa.registry.models import Controller, Site
    from enexa.telemetry.choices import TransitionReason
    from enexa.telemetry.models import (
        ChargerValue,
        Event,
        SiteStatus,
        SiteStatusTransition,
        TelemetryReading,
    )

    sites = Site.objects.bulk_create(
        Site(code=f"SITE{i:04d}", name=f"Hub {i}", grid_connection_limit_kw=400.0)
        for i in range(SITES)
    )
    SiteStatus.objects.bulk_create(
        SiteStatus(site=s, online=i % 10 != 0, last_seen_at=now, mode="auto")
        for i, s in enumerate(sites)
    )
    # A fleet that has run a while: "since" two days, not seconds (which change every poll).
    SiteStatusTransition.objects.bulk_create(
        SiteStatusTransition(
            site=s, online=i % 10 != 0, at=now - timedelta(days=2), reason=TransitionReason.STATUS
        )
        for i, s in enumerate(sites)
    )
    readings = TelemetryReading.objects.bulk_create(
        TelemetryReading(
            site=s,
            timestamp=now - timedelta(seconds=READING_INTERVAL_S * k),
            received_at=now,
            battery_soc_pct=50.0 + k,
            battery_power_kw=-20.0,
            grid_import_kw=150.0,
            grid_export_kw=0.0,
            chargers_power_kw=100.0,
        )
        for s in sites
        for k in range(10)
    )
    ChargerValue.objects.bulk_create(
        ChargerValue(
            reading=r, timestamp=r.timestamp, charger_code=code, status=status, power_kw=kw
        )
        for r in readings
        for code, status, kw in (("CHG1", "charging", 100.0), ("CHG2", "available", 0.0))
    )
    Event.objects.bulk_create(
        Event(
            site=s,
            event_id=f"alarm-{k}",
            timestamp=now - timedelta(minutes=k),
            received_at=now,
            kind="alarm",
            severity="warning",
            data={"chargepost": 1, "alarm_bits": k % 2 * 2, "raised": [], "cleared": []},
        )
        for s in sites
        for k in range(3)
    )
    for i, s in enumerate(sites):  # one by one: the creation signal makes version 1
        Controller.objects.create(
            code=f"CTRL{i:04d}", serial=f"B-{i}", site=s, firmware_version="1.0.0"
        )
    FirmwareRelease.objects.create(
        version="1.1.0",
        controller_model="Amperio-GW",
        url="https://downloads.example.com/amperio-1.1.0.bin",
        sha256="0" * 64,
        size_bytes=1,
        channel="stable",
        published=True,
    )


def _week_of_readings(site, now) -> int:
    """A reading every READING_INTERVAL_S over the past week (7 days: 120,960 rows)."""
    from enexa.telemetry import partitions
    from enexa.telemetry.models import TelemetryReading

    count = 7 * 86400 // READING_INTERVAL_S
    # On PostgreSQL the readings' days need their partitions, as ingest makes sure.
    partitions.ensure_partitions(now - timedelta(days=d) for d in range(9))
    batch = 10_000
    for first in range(0, count, batch):
        TelemetryReading.objects.bulk_create(
            TelemetryReading(
                site=site,
                timestamp=now - timedelta(seconds=READING_INTERVAL_S * (k + 1)),
                received_at=now,
                battery_soc_pct=20.0 + (k % 600) / 10,
                battery_power_kw=-50.0 + k % 100,
                grid_import_kw=100.0 + k % 250,
                grid_export_kw=0.0,
                chargers_power_kw=float(k % 300),
            )
            for k in range(first, min(first + batch, count))
        )
    return count


def _aggregate(now) -> None:
    """What the worker keeps on a running system: the aggregates of every site's readings
    (the bulk loads above bypass ingest, which would have marked their minutes), built the way
    the worker builds them."""
    from enexa.registry.models import Site
    from enexa.telemetry import aggregates

    pks = list(Site.objects.values_list("pk", flat=True))
    aggregates.rebuild(pks, now - timedelta(days=7, minutes=1), now + timedelta(minutes=1))


def _mark_newest_minute(site, now):
    """Mark the site's newest minute stale, as ingest does with each reading: a chart read
    while the worker has not refreshed it yet refreshes it first."""
    from enexa.telemetry import aggregates
    from enexa.telemetry.models import StaleMinute

    minute = aggregates.floor_to(now, aggregates.MINUTE_S)
    return lambda: StaleMinute.objects.get_or_create(site=site, minute_at=minute)


def main() -> None:
    with throwaway_database():
        from django.conf import settings

        urlpatterns[:] = [path("bench/bare", bare), path("", include("enexa.urls"))]
        settings.ROOT_URLCONF = __name__
        results = _run()
    out = RESULTS_DIR / f"dashboard-{results['database']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _run() -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from enexa.registry.models import Site

    now = timezone.now()
    started = time.perf_counter()
    _fleet(now)
    week_site = Site.objects.create(code="WEEK1", name="A week", grid_connection_limit_kw=400)
    week_now = timezone.now()
    week_readings = _week_of_readings(week_site, week_now)
    _aggregate(week_now)
    with connection.cursor() as cursor:
        # Planner statistics, as autovacuum keeps them on a running database: without them
        # PostgreSQL plans the fresh bulk load blind.
        cursor.execute("ANALYZE")
    setup_s = time.perf_counter() - started
    staff = get_user_model().objects.create_user("bench", is_staff=True)
    client = Client()
    client.force_login(staff)
    load_before = os.getloadavg()
    floor = _measure(client, "/bench/bare", REQUESTS * 5)
    fleet = _measure(client, "/app/")
    # The table's poll every few seconds (htmx: the fragment only), and the same poll when the
    # fleet has not changed since the browser's copy (its ETag in If-None-Match: 304, no body).
    poll = {"HX-Request": "true"}
    fleet_poll = _measure(client, "/app/", headers=poll)
    poll_etag = client.get("/app/", headers=poll).headers.get("ETag")
    fleet_poll_unchanged = (
        _measure(client, "/app/", headers={**poll, "If-None-Match": poll_etag}, status=304)
        if poll_etag
        else None
    )
    charts = {
        r: _measure(client, f"/app/sites/WEEK1/chart?range={r}") for r in ("hour", "day", "week")
    }
    # The week again with its newest minute just written (marked stale before each request),
    # as a chart polled while readings arrive finds it between two runs of the worker.
    charts["week_newest_minute_stale"] = _measure(
        client,
        "/app/sites/WEEK1/chart?range=week",
        before=_mark_newest_minute(week_site, week_now - timedelta(seconds=READING_INTERVAL_S)),
    )
    site_page = _measure(client, "/app/sites/SITE0001/")
    load_after = os.getloadavg()
    return {
        "database": connection.vendor,
        "sites": SITES + 1,
        "week_readings": week_readings,
        "setup_s": round(setup_s, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "floor_bare_view": floor,
        "fleet_page": {**fleet, "target_ms": FLEET_TARGET_MS},
        "fleet_poll": fleet_poll,
        "fleet_poll_unchanged": fleet_poll_unchanged,
        "chart_data": {
            **{k: v for k, v in charts.items() if k != "week"},
            "week": {**charts["week"], "target_ms": CHART_WEEK_TARGET_MS},
        },
        "site_page": site_page,
        "within_targets": {
            "fleet_page_median": fleet["median_ms"] < FLEET_TARGET_MS,
            "chart_week_median": charts["week"]["median_ms"] < CHART_WEEK_TARGET_MS,
        },
    }


if __name__ == "__main__":
    main()
