"""Telemetry ingest through the real HTTP stack (gunicorn, PostgreSQL) against a raw binary COPY
into the same tables, in one run: readings/s, the ratio, and p50/p99 latencies.

Uses DATABASE_URL when it points at PostgreSQL, else postgres://postgres@127.0.0.1:5432/test,
in a database of its own (created and dropped here). Writes bench/results/ingest.json."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from shared.fields import format_timestamp
from tests.integration.bare_enexa import BareEnexa

RESULTS = Path(__file__).parent / "results" / "ingest.json"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test"
SINGLE_CLIENTS = int(os.environ.get("BENCH_SINGLE_CLIENTS", "8"))
SINGLE_POSTS = int(os.environ.get("BENCH_SINGLE_POSTS", "6000"))
BATCH_CLIENTS = int(os.environ.get("BENCH_BATCH_CLIENTS", "2"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "40"))
BATCH_SIZE = 1000
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def reading(n: int, site: str = "SITE001") -> dict:
    """The contract's reading: site totals, two battery units, one charger; one per second."""
    return {
        "site_id": site,
        "timestamp": format_timestamp(T0 + timedelta(seconds=n)),
        "message_id": f"{site}-{n}",
        "battery": {"soc_pct": 50 + n % 40, "power_kw": -25.0,
                    "units": [{"id": "BAT1", "soc_pct": 64.8, "power_kw": -12.5},
                              {"id": "BAT2", "soc_pct": 65.2, "power_kw": -12.5}]},
        "grid": {"import_kw": 35.0, "export_kw": 0.0},
        "chargers": [{"id": "CHG1", "power_kw": 150.0, "status": "charging", "energy_kwh": 12.3}],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_clients(port: int, token: str, bodies: list[bytes], clients: int) -> dict:
    """POST every body to /v1/telemetry from `clients` keep-alive connections; rates and
    latencies of the whole run."""
    latencies: list[float] = []
    errors: list[str] = []
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            started = time.perf_counter()
            conn.request("POST", "/v1/telemetry", bodies[i], headers)
            response = conn.getresponse()
            body = response.read()
            mine.append(time.perf_counter() - started)
            if response.status not in (200, 201):
                with lock:
                    errors.append(f"{response.status} {body[:200]!r}")
                continue
            result = json.loads(body)
            with lock:
                for key in counts:
                    counts[key] += result[key]
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} failed posts, first: {errors[0]}")
    return {
        "requests": len(bodies),
        "clients": clients,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(bodies) / elapsed, 1),
        "readings_per_s": round(counts["accepted"] / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        **counts,
    }


def copy_rows(database_url: str, site_pk: int, first: int, count: int) -> dict:
    """Binary COPY of `count` readings (and their unit and charger rows) into the same tables."""
    received = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence('telemetry_telemetryreading', 'id')) "
                "FROM generate_series(1, %s)", [count])
            ids = [row[0] for row in cur.fetchall()]
            with cur.copy(
                "COPY telemetry_telemetryreading (id, site_id, timestamp, message_id, "
                "received_at, backfilled, battery_soc_pct, battery_power_kw, grid_import_kw, "
                "grid_export_kw, chargers_power_kw) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8", "timestamptz", "varchar", "timestamptz", "bool",
                                "float8", "float8", "float8", "float8", "float8"])
                for reading_id, n in zip(ids, range(first, first + count), strict=True):
                    copy.write_row((reading_id, site_pk, T0 + timedelta(seconds=n),
                                    f"copy-{n}", received, False, 50.0 + n % 40, -25.0, 35.0,
                                    0.0, 150.0))
            with cur.copy(
                "COPY telemetry_batteryunitvalue (reading_id, unit_code, soc_pct, power_kw) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "varchar", "float8", "float8"])
                for reading_id in ids:
                    copy.write_row((reading_id, "BAT1", 64.8, -12.5))
                    copy.write_row((reading_id, "BAT2", 65.2, -12.5))
            with cur.copy(
                "COPY telemetry_chargervalue (reading_id, charger_code, power_kw, status, "
                "energy_kwh) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "varchar", "float8", "varchar", "float8"])
                for reading_id in ids:
                    copy.write_row((reading_id, "CHG1", 150.0, "charging", 12.3))
        conn.commit()
        elapsed = time.perf_counter() - started
    return {"readings": count, "seconds": round(elapsed, 3),
            "readings_per_s": round(count / elapsed, 1)}


def main() -> dict:
    base = os.environ.get("DATABASE_URL", "")
    base = base if base.startswith("postgres") else DEFAULT_URL
    name = f"enexa_bench_{uuid.uuid4().hex[:8]}"
    database_url = base.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    server = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            server = BareEnexa(database_url, Path(tmp), sites=("SITE001", "SITE002", "SITE003"),
                               workers=WORKERS, threads=THREADS)
            token = server.token()
            with psycopg.connect(database_url) as conn:
                site_pk = conn.execute("SELECT id FROM registry_site WHERE code = 'SITE003'"
                                       ).fetchone()[0]
            single_bodies = [json.dumps(reading(n)).encode() for n in range(SINGLE_POSTS)]
            batch_bodies = [
                json.dumps({"items": [reading(b * BATCH_SIZE + i, "SITE002")
                                      for i in range(BATCH_SIZE)]}).encode()
                for b in range(BATCHES)
            ]
            run_clients(server.port, token, single_bodies[:200], SINGLE_CLIENTS)  # warm up
            single = run_clients(server.port, token, single_bodies[200:], SINGLE_CLIENTS)
            batched = run_clients(server.port, token, batch_bodies, BATCH_CLIENTS)
            server.stop()  # COPY gets the machine to itself, as the API runs did
            server = None
            copied = copy_rows(database_url, site_pk, 0, BATCHES * BATCH_SIZE)
    finally:
        if server is not None:
            server.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ratio = batched["readings_per_s"] / copied["readings_per_s"]
    results = {
        "machine_cpus": os.cpu_count(),
        "gunicorn": {"workers": WORKERS, "threads": THREADS},
        "single_posts": single,
        "batches_of_1000": batched,
        "copy_binary": copied,
        "batched_to_copy_ratio": round(ratio, 3),
        "targets": {"single_posts_readings_per_s": 600, "batched_to_copy_ratio": 0.25},
        "targets_met": {
            "single_posts": single["readings_per_s"] >= 600,
            "batched_ratio": ratio >= 0.25,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"single posts : {single['readings_per_s']:>9.1f} readings/s  "
          f"p50 {single['p50_ms']} ms  p99 {single['p99_ms']} ms  ({SINGLE_CLIENTS} clients)")
    print(f"batches 1000 : {batched['readings_per_s']:>9.1f} readings/s  "
          f"p50 {batched['p50_ms']} ms  p99 {batched['p99_ms']} ms  ({BATCH_CLIENTS} clients)")
    print(f"binary COPY  : {copied['readings_per_s']:>9.1f} readings/s")
    print(f"batched / COPY ratio: {ratio:.3f} (target >= 0.25); results in {RESULTS}")
    return results


if __name__ == "__main__":
    main()
