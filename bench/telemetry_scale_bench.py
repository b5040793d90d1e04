"""Telemetry at fleet scale (issue 20): a fleet's month of readings loaded with COPY into the
daily partitions, its aggregates built, then chart reads, the latest reading of every site,
dropping a day, and ingest with that much stored against an empty database, in one run.

PostgreSQL as for bench/ingest_bench.py (DATABASE_URL, else the local server), two databases of
its own, created and dropped here. The issue asks for 50 sites x 30 days at 5 s (about 26 M
readings); BENCH_FLEET_INTERVAL_S (default 30) scales the load down on a shared 2-core machine,
and the results say by how much. Readings are loaded without unit and charger rows: no figure
measured here reads them but the latest readings (which find none). Writes
bench/results/telemetry_scale.json."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.ingest_bench import (
    BATCH_CLIENTS,
    DEFAULT_URL,
    REDIS_URL,
    SINGLE_CLIENTS,
    WORKERS,
    reading,
    run_clients,
    uptime,
)
from demo.bare_enexa import BareEnexa
from demo.enexa import run_manage

RESULTS = Path(__file__).parent / "results" / "telemetry_scale.json"
SITES = int(os.environ.get("BENCH_FLEET_SITES", "50"))
DAYS = int(os.environ.get("BENCH_FLEET_DAYS", "30"))
INTERVAL_S = int(os.environ.get("BENCH_FLEET_INTERVAL_S", "30"))
ASKED_INTERVAL_S = 5
READS = int(os.environ.get("BENCH_FLEET_READS", "15"))
INGEST_ROUNDS = int(os.environ.get("BENCH_FLEET_INGEST_ROUNDS", "3"))
SINGLE_POSTS = int(os.environ.get("BENCH_FLEET_SINGLE_POSTS", "1500"))
# Batches per round: 5 made each measurement a fifth of a second, too short on a shared machine.
BATCHES = int(os.environ.get("BENCH_FLEET_BATCHES", "12"))
TARGET_READ_MS = 100
TARGET_LATEST_MS = 50
TARGET_DROP_S = 1.0
TARGET_INGEST_RATIO = 0.9

COPY_SQL = (
    "COPY telemetry_telemetryreading (site_id, timestamp, received_at, backfilled, "
    "battery_soc_pct, battery_power_kw, grid_import_kw, grid_export_kw, chargers_power_kw) "
    "FROM STDIN (FORMAT BINARY)"
)
COPY_TYPES = ["int8", "timestamptz", "timestamptz", "bool", *["float8"] * 5]


def load_fleet(database_url: str, first_day: datetime) -> dict:
    """COPY SITES x DAYS of readings every INTERVAL_S into their days' partitions."""
    from enexa.telemetry.partitions import PARTITIONED, partition_sql

    started = time.perf_counter()
    per_day = 86400 // INTERVAL_S
    with psycopg.connect(database_url) as conn:
        pks = [r[0] for r in conn.execute("SELECT id FROM registry_site ORDER BY code")]
        for n in range(DAYS):
            day = (first_day + timedelta(days=n)).date()
            for table in PARTITIONED:
                for sql in partition_sql(table, day):
                    conn.execute(sql)
        conn.commit()
        received = datetime.now(UTC)
        with conn.cursor() as cur:
            for n in range(DAYS):
                day_start = first_day + timedelta(days=n)
                with cur.copy(COPY_SQL) as copy:
                    copy.set_types(COPY_TYPES)
                    for i in range(per_day):
                        ts = day_start + timedelta(seconds=i * INTERVAL_S)
                        phase = i % 720
                        for s, pk in enumerate(pks):
                            soc = 20.0 + (phase + s) % 60
                            copy.write_row(
                                (pk, ts, received, False, soc, 10.0 - s % 20, 30.0, 0.0, 7.5)
                            )
                conn.commit()
        conn.execute("ANALYZE telemetry_telemetryreading")
        conn.commit()
    count = SITES * DAYS * per_day
    elapsed = time.perf_counter() - started
    return {
        "readings": count,
        "seconds": round(elapsed, 1),
        "readings_per_s": round(count / elapsed),
    }


REBUILD = """
from datetime import datetime
from enexa.registry.models import Site
from enexa.telemetry.aggregates import rebuild
rebuild(list(Site.objects.values_list("pk", flat=True)),
        datetime.fromisoformat({start!r}), datetime.fromisoformat({end!r}))
"""


def timed(fn, repeat: int = READS) -> dict:
    """Median and worst of `repeat` calls, in ms (after one call to warm up)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def measure_reads(database_url: str, env: dict, first_day: datetime, last_day: datetime) -> dict:
    """Chart series, the latest readings and dropping the oldest day, in this process (the
    service calls a dashboard makes, without HTTP)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = env["DJANGO_SETTINGS_MODULE"]
    os.environ["DATABASE_URL"] = database_url
    os.environ["ENEXA_VAR_DIR"] = env["ENEXA_VAR_DIR"]
    import django

    django.setup()
    from enexa.registry.models import Site
    from enexa.telemetry import partitions, services
    from enexa.telemetry.models import TelemetryAggregate
    from enexa.telemetry.queries import delete_fine_aggregates_before

    sites = list(Site.objects.order_by("code"))
    site = sites[len(sites) // 2]
    end = last_day + timedelta(days=1)
    reads = {
        "day_at_1m": timed(lambda: services.series(site, last_day, end, "1m")),
        "week_at_15m": timed(lambda: services.series(site, end - timedelta(days=7), end, "15m")),
        "month_at_1h": timed(lambda: services.series(site, first_day, end, "1h")),
        "latest_of_all_sites": timed(lambda: services.latest_readings(sites)),
    }
    points = {
        "day_at_1m": len(services.series(site, last_day, end, "1m")),
        "week_at_15m": len(services.series(site, end - timedelta(days=7), end, "15m")),
        "month_at_1h": len(services.series(site, first_day, end, "1h")),
        "latest_of_all_sites": sum(
            1 for r in services.latest_readings(sites).values() if r is not None
        ),
    }
    hours_before = TelemetryAggregate.objects.filter(
        resolution_s=3600, bucket_at__lt=first_day + timedelta(days=1)
    ).count()
    started = time.perf_counter()
    dropped = partitions.drop_days_before(first_day + timedelta(days=1))
    drop_s = time.perf_counter() - started
    started = time.perf_counter()
    fine = delete_fine_aggregates_before(first_day + timedelta(days=1))
    fine_s = time.perf_counter() - started
    hours_after = TelemetryAggregate.objects.filter(
        resolution_s=3600, bucket_at__lt=first_day + timedelta(days=1)
    ).count()
    return {
        "reads": reads,
        "points": points,
        "drop_one_day": {
            "days_dropped": [d.isoformat() for d in dropped],
            "seconds": round(drop_s, 3),
            "fine_aggregates_deleted": fine,
            "fine_aggregates_delete_s": round(fine_s, 3),
            "hourly_aggregates_before_and_after": [hours_before, hours_after],
        },
    }


def ingest_rounds(empty: BareEnexa, full: BareEnexa) -> dict:
    """Single posts and batches of 1,000 against both servers, rounds interleaved so that load
    from elsewhere weighs on both alike; the ratio is full / empty."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=10)
    figures: dict[str, dict[str, list[float]]] = {
        "single": {"empty": [], "full": []},
        "batch": {"empty": [], "full": []},
    }
    # Warm both servers first (each worker's key cache, prepared statements and known days), so
    # that the first round does not measure one server's start.
    for server in (empty, full):
        warm = [
            json.dumps(reading(n, "SITE001") | {"timestamp": _at(t0, n)}).encode()
            for n in range(-400, 0)
        ]
        run_clients(server.port, server.api_keys["SITE001"], warm, SINGLE_CLIENTS)
    for r in range(INGEST_ROUNDS):
        for label, server in (("empty", empty), ("full", full)):
            key = server.api_keys["SITE001"]
            base = r * SINGLE_POSTS
            bodies = [
                json.dumps(reading(base + n, "SITE001") | {"timestamp": _at(t0, base + n)}).encode()
                for n in range(SINGLE_POSTS)
            ]
            figures["single"][label].append(
                run_clients(server.port, key, bodies, SINGLE_CLIENTS)["readings_per_s"]
            )
            first = 100_000 + r * BATCHES * 1000
            batch_key = server.api_keys["SITE002"]
            batches = [
                json.dumps(
                    {
                        "items": [
                            reading(n, "SITE002") | {"timestamp": _at(t0, n)}
                            for n in range(first + b * 1000, first + (b + 1) * 1000)
                        ]
                    }
                ).encode()
                for b in range(BATCHES)
            ]
            figures["batch"][label].append(
                run_clients(server.port, batch_key, batches, BATCH_CLIENTS)["readings_per_s"]
            )
    out = {}
    for kind, runs in figures.items():
        empty_rate, full_rate = (statistics.median(runs[k]) for k in ("empty", "full"))
        out[kind] = {
            "empty_readings_per_s": round(empty_rate, 1),
            "full_readings_per_s": round(full_rate, 1),
            "full_to_empty": round(full_rate / empty_rate, 3),
            "rounds": runs,
        }
    return out


def _at(t0: datetime, n: int) -> str:
    return (t0 + timedelta(seconds=n * 0.25)).isoformat().replace("+00:00", "Z")


def main() -> dict:
    base = os.environ.get("DATABASE_URL", "")
    base = base if base.startswith("postgres") else DEFAULT_URL
    names = {k: f"enexa_bench_{k}_{uuid.uuid4().hex[:8]}" for k in ("full", "empty")}
    urls = {k: base.rsplit("/", 1)[0] + f"/{n}" for k, n in names.items()}
    with psycopg.connect(base, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    servers: dict[str, BareEnexa] = {}
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day, last_day = today - timedelta(days=DAYS), today - timedelta(days=1)
    sites = tuple(f"SITE{n:03d}" for n in range(1, SITES + 1))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("full", "empty"):
                servers[kind] = BareEnexa(
                    urls[kind],
                    Path(tmp) / kind,
                    sites=sites if kind == "full" else sites[:2],
                    workers=WORKERS,
                    threads=1,
                    controllers=True,
                    extra_env={
                        "REDIS_URL": REDIS_URL,
                        "ENEXA_RATE_LIMITS": "user=1000000000/min,controller=1000000000/min",
                    },
                )
            print(f"loading {SITES} sites x {DAYS} days at {INTERVAL_S} s ...", flush=True)
            load = load_fleet(urls["full"], first_day)
            print(f"  {load}", flush=True)
            started = time.perf_counter()
            run_manage(
                "shell",
                "-c",
                REBUILD.format(start=first_day.isoformat(), end=today.isoformat()),
                env=servers["full"].env,
            )
            rebuild_s = round(time.perf_counter() - started, 1)
            print(f"  aggregates built in {rebuild_s} s", flush=True)
            # As a fleet's history would be: vacuumed, not fresh from a bulk load (autovacuum
            # working through 4 M new rows would weigh on the measurements that follow).
            with psycopg.connect(urls["full"], autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE) telemetry_telemetryreading")
                conn.execute("VACUUM (ANALYZE) telemetry_telemetryaggregate")
            ingest = ingest_rounds(servers["empty"], servers["full"])
            measured = measure_reads(urls["full"], servers["full"].env, first_day, last_day)
    finally:
        for server in servers.values():
            server.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            for name in names.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    reads = measured["reads"]
    met = {
        "day_at_1m": reads["day_at_1m"]["median_ms"] < TARGET_READ_MS,
        "week_at_15m": reads["week_at_15m"]["median_ms"] < TARGET_READ_MS,
        "month_at_1h": reads["month_at_1h"]["median_ms"] < TARGET_READ_MS,
        "latest_of_all_sites": reads["latest_of_all_sites"]["median_ms"] < TARGET_LATEST_MS,
        "drop_one_day": measured["drop_one_day"]["seconds"] < TARGET_DROP_S,
        "ingest_single_full_vs_empty": ingest["single"]["full_to_empty"] >= TARGET_INGEST_RATIO,
        "ingest_batch_full_vs_empty": ingest["batch"]["full_to_empty"] >= TARGET_INGEST_RATIO,
    }
    results = {
        "uptime": uptime(),
        "machine_cpus": os.cpu_count(),
        "fleet": {
            "sites": SITES,
            "days": DAYS,
            "interval_s": INTERVAL_S,
            "scaled_down_by": INTERVAL_S / ASKED_INTERVAL_S,
            "load": load,
            "aggregates_build_s": rebuild_s,
        },
        **measured,
        "ingest": ingest,
        "targets": {
            "read_ms": TARGET_READ_MS,
            "latest_ms": TARGET_LATEST_MS,
            "drop_one_day_s": TARGET_DROP_S,
            "ingest_full_to_empty": TARGET_INGEST_RATIO,
        },
        "targets_met": met,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for name, figure in reads.items():
        print(f"{name:22} median {figure['median_ms']:8.2f} ms  max {figure['max_ms']:8.2f} ms")
    drop = measured["drop_one_day"]
    print(
        f"drop one day           {drop['seconds']:.3f} s (hourly aggregates kept: "
        f"{drop['hourly_aggregates_before_and_after']})"
    )
    for kind, figure in ingest.items():
        print(
            f"ingest {kind:6}          empty {figure['empty_readings_per_s']:9.1f}/s  "
            f"full {figure['full_readings_per_s']:9.1f}/s  ratio {figure['full_to_empty']}"
        )
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    print(f"{results['uptime']}; results in {RESULTS}")
    return results


if __name__ == "__main__":
    main()
