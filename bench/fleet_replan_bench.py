"""A fleet re-plan: 1,000 sites under the optimizer's control re-planned through the real
service (`enexa.optimizer.services.replan_fleet`: registry, configuration, newest reading, a
week-old load history, prices, the solve, the stored plan and its `apply_schedule` command) on
a throw-away test database (SQLite, or PostgreSQL with DATABASE_URL), in one process.

The floor, measured in the same run: the solver alone on the same problems, so what the
service adds (reads, writes, the forecast) is the difference. Target: under 60 s for 1,000.
Results: bench/results/fleet_replan.json (fleet_replan_postgresql.json on PostgreSQL).
`python -m bench fleet_replan` (BENCH_FLEET_SITES to change the count)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.testdb import throwaway_database, write_results

RESULTS = Path(__file__).parent / "results" / "fleet_replan.json"
SITES = int(os.environ.get("BENCH_FLEET_SITES", "1000"))
# Re-plans at once, as the worker's threads take the beat's per-site tasks (`-c 2` in the demo
# and systemd units); each thread has its own database connection. SQLite takes one writer at
# a time, so it runs them one by one.
THREADS = int(os.environ.get("BENCH_FLEET_THREADS", "2"))
TARGET_S = 60.0
NOW = datetime(2026, 1, 15, 12, 3, tzinfo=UTC)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def _fleet() -> list:
    """SITES sites, each with a battery of two units, 48 h of hourly prices, a day of readings
    a week ago (the forecast's history) and a reading now (the SOC)."""
    from enexa.optimizer.models import PriceSlot
    from enexa.registry.choices import EquipmentKind
    from enexa.registry.models import Equipment, Site
    from enexa.telemetry import aggregates, partitions
    from enexa.telemetry.models import TelemetryReading

    sites = Site.objects.bulk_create(
        Site(code=f"SITE{n:05d}", name=f"Site {n}", grid_connection_limit_kw=400.0)
        for n in range(SITES)
    )
    systems = Equipment.objects.bulk_create(
        Equipment(
            code=f"BESS{n:05d}",
            site=site,
            kind=EquipmentKind.BATTERY_SYSTEM,
            capacity_kwh=200.0,
            max_power_kw=220.0,
            soc_min_pct=5.0,
            soc_max_pct=95.0,
        )
        for n, site in enumerate(sites)
    )
    Equipment.objects.bulk_create(
        Equipment(
            code=f"BAT{n:05d}{u}",
            site=site,
            parent=system,
            kind=EquipmentKind.BATTERY_UNIT,
            capacity_kwh=100.0,
            max_power_kw=110.0,
            soc_min_pct=5.0,
            soc_max_pct=95.0,
        )
        for n, (site, system) in enumerate(zip(sites, systems, strict=True))
        for u in (1, 2)
    )
    start = NOW.replace(minute=0) - timedelta(hours=1)
    prices = []
    readings = []
    for n, site in enumerate(sites):
        for h in range(48):
            at = start + timedelta(hours=h)
            dear = 17 <= at.hour < 21
            prices.append(
                PriceSlot(
                    site=site,
                    start=at,
                    end=at + timedelta(hours=1),
                    import_price=0.35 if dear else 0.12 + 0.001 * (n % 50),
                    export_price=0.05,
                    currency="EUR",
                )
            )
        week_ago = NOW - timedelta(days=7)
        for k in range(96):
            at = week_ago + timedelta(minutes=15 * k)
            load = 40.0 + 30.0 * ((k // 8) % 3)
            readings.append(
                TelemetryReading(
                    site=site,
                    timestamp=at,
                    received_at=at,
                    battery_soc_pct=50.0,
                    battery_power_kw=0.0,
                    grid_import_kw=load,
                    grid_export_kw=0.0,
                )
            )
        readings.append(
            TelemetryReading(
                site=site,
                timestamp=NOW - timedelta(seconds=30),
                received_at=NOW,
                battery_soc_pct=30.0 + n % 40,
                battery_power_kw=0.0,
                grid_import_kw=50.0,
                grid_export_kw=0.0,
            )
        )
    PriceSlot.objects.bulk_create(prices, batch_size=5000)
    # The bulk load bypasses ingest: its days' partitions (PostgreSQL) are made first, and the
    # aggregates the optimizer reads its load history from are built after, as the worker
    # builds them on a running system.
    partitions.ensure_partitions(r.timestamp for r in readings)
    TelemetryReading.objects.bulk_create(readings, batch_size=5000)
    aggregates.rebuild(
        [site.pk for site in sites], NOW - timedelta(days=7, hours=1), NOW + timedelta(hours=1)
    )
    return sites


def _replan_in_threads(due: list[int], threads: int, now: datetime, per_site: list[float]) -> int:
    """Re-plan the `due` sites (reason `scheduled`) with `threads` threads, each on its own
    database connection; the time of each re-plan goes to `per_site`. Returns the plans made."""
    from django.db import connection

    from enexa.optimizer import services
    from enexa.optimizer.choices import PlanReason

    made = []

    def work(chunk: list[int]) -> None:
        try:
            for site_pk in chunk:
                t = time.perf_counter()
                plan = services.replan_site(site_pk, PlanReason.SCHEDULED, now=now)
                per_site.append((time.perf_counter() - t) * 1000)
                made.append(plan is not None)
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()

    if threads == 1:
        work(due)
    else:
        workers = [threading.Thread(target=work, args=(due[i::threads],)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return sum(made)


def main() -> None:
    import logging

    with throwaway_database():
        logging.getLogger("enexa.optimizer").setLevel(logging.WARNING)  # not a line per plan
        from django.db import connection

        from enexa.optimizer import services, solver
        from enexa.optimizer.choices import PlanReason
        from enexa.optimizer.models import Plan

        started = time.perf_counter()
        sites = _fleet()
        setup_s = time.perf_counter() - started
        # The first plans put every site under control (dispatched, as the API would).
        started = time.perf_counter()
        for site in sites:
            services.create_plan(site, reason=PlanReason.MANUAL, now=NOW)
        first_s = time.perf_counter() - started

        # The fleet re-plan, 15 minutes later: the sites due, each re-planned by the service
        # the beat's per-site task calls, by THREADS threads as the worker's would.
        later = NOW + timedelta(minutes=15)
        threads = THREADS if connection.vendor != "sqlite" else 1
        per_site: list[float] = []
        load_before = os.getloadavg()
        started = time.perf_counter()
        due = services.sites_due(now=later)
        made = _replan_in_threads(due, threads, later, per_site)
        fleet_s = time.perf_counter() - started
        load_after = os.getloadavg()

        # The floor: the solver alone on the same problems (warm, as in the fleet run).
        problems = [
            services.problem_from_inputs(p.inputs)
            for p in Plan.objects.filter(reason=PlanReason.SCHEDULED).order_by("pk")
        ]
        started = time.perf_counter()
        for problem in problems:
            solver.solve(problem)
        floor_s = time.perf_counter() - started
        results = {
            "database": connection.vendor,
            "sites": SITES,
            "slots": len(problems[0].load_kw) if problems else 0,
            "setup_s": round(setup_s, 1),
            "first_plans_s": round(first_s, 2),
            "fleet_replan_s": round(fleet_s, 2),
            "threads": threads,
            "planned": made,
            "skipped": len(due) - made,
            "per_site_median_ms": round(statistics.median(per_site), 2),
            "per_site_p99_ms": round(_percentile(per_site, 99), 2),
            "floor_solver_only_s": round(floor_s, 2),
            "target_s": TARGET_S,
            "within_target": fleet_s < TARGET_S,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        }
    # One file per database: the SQLite default, and PostgreSQL's beside it.
    vendor = results["database"]
    write_results(
        RESULTS.with_stem(f"fleet_replan_{vendor}") if vendor != "sqlite" else RESULTS, results
    )


if __name__ == "__main__":
    main()
