"""Telemetry ingest through the real HTTP stack (gunicorn, PostgreSQL) against a raw binary COPY
into the same tables, in one run: readings/s, the ratio, and p50/p99 latencies.

Uses DATABASE_URL when it points at PostgreSQL, else postgres://postgres@127.0.0.1:5432/test,
in a database of its own (created and dropped here), and REDIS_URL (else redis://127.0.0.1:6379/0)
for the rate-limit counts, as production does. Writes bench/results/ingest.json."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis

from amperio.procs import Proc, free_port, wait_until
from demo.bare_enexa import BareEnexa
from shared.fields import format_timestamp

RESULTS = Path(__file__).parent / "results" / "ingest.json"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SINGLE_CLIENTS = int(os.environ.get("BENCH_SINGLE_CLIENTS", "8"))
SINGLE_POSTS = int(os.environ.get("BENCH_SINGLE_POSTS", "6000"))
# Batch clients: one fewer than the server's workers. With two, each batch's commit (its WAL
# flush) and transfer left a sixth of the two cores idle (cores_busy 1.66 against 1.85-1.90
# with four), so the figure measured the clients' pacing more than the server's capacity.
# Binary COPY is one stream that keeps its one backend busy (cores_busy 1.0).
BATCH_CLIENTS = int(os.environ.get("BENCH_BATCH_CLIENTS", "4"))
BATCHES_PER_ROUND = int(os.environ.get("BENCH_BATCHES_PER_ROUND", "12"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BATCH_SIZE = 1000
# Issue 20's targets.
SINGLE_TARGET_PER_S = 1000
P99_TARGET_MS = 25
RATIO_TARGET = 0.5
# What infra/systemd/enexa.service ships: (2 x cores) + 1 sync workers.
WORKERS = int(os.environ.get("BENCH_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
# Live readings carry the current time: recent days, whose partitions exist ahead of them.
# Readings go one per second from here, about 10 hours of them in all.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=20)


def reading(n: int, site: str = "SITE001") -> dict:
    """The contract's reading: site totals, two battery units, one charger; one per second."""
    return {
        "site_id": site,
        "timestamp": format_timestamp(T0 + timedelta(seconds=n)),
        "message_id": f"{site}-{n}",
        "battery": {
            "soc_pct": 50 + n % 40,
            "power_kw": -25.0,
            "units": [
                {"id": "BAT1", "soc_pct": 64.8, "power_kw": -12.5},
                {"id": "BAT2", "soc_pct": 65.2, "power_kw": -12.5},
            ],
        },
        "grid": {"import_kw": 35.0, "export_kw": 0.0},
        "chargers": [{"id": "CHG1", "power_kw": 150.0, "status": "charging", "energy_kwh": 12.3}],
    }


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (gone ones count 0)."""
    return sum(cpu_by_pid(pids).values())


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """Each live process's user + system CPU seconds so far."""
    spent = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        spent[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return spent


def cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds these processes used since `before`: a process new since then counts whole
    (Django reopens its database connections after ENEXA_CONN_MAX_AGE, so PostgreSQL backends
    come and go during a run); one gone since then loses what it used after `before`."""
    return sum(now - before.get(pid, 0.0) for pid, now in cpu_by_pid(pids).items())


def server_pids(master: int, database_url: str) -> dict[str, list[int]]:
    """The server's processes by kind: the gunicorn master and workers, the PostgreSQL
    backends serving its database, and the Redis server when it runs on this machine."""
    groups: dict[str, list[int]] = {"gunicorn": [master], "postgres": [], "redis": []}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                groups["gunicorn"].append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url, autocommit=True) as conn:
        groups["postgres"] = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
        ]
    redis_pid = redis.Redis.from_url(REDIS_URL).info("server")["process_id"]
    if Path(f"/proc/{redis_pid}").exists():
        groups["redis"].append(redis_pid)
    return groups


def uptime() -> str:
    """`uptime`'s line: the load on this shared machine while the figures were taken."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raw_request(port: int, api_key: str, body: bytes) -> bytes:
    """The bytes of one POST /v1/telemetry, built before the clock starts (HTTP/1.0: the answer
    ends with the connection, never chunked)."""
    head = (
        f"POST /v1/telemetry HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def post_raw(port: int, request: bytes) -> tuple[int, bytes]:
    """Send one prebuilt request on its own connection (gunicorn's sync workers close it after
    each answer anyway) and read the answer to the end: a load generator costing a fraction of
    http.client's CPU, which would otherwise take its share of the server's two cores."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head[9:12]), body


def run_clients(
    port: int,
    api_key: str,
    bodies: list[bytes],
    clients: int,
    pids: Callable[[], dict[str, list[int]]] | None = None,
) -> dict:
    """POST every body to /v1/telemetry from `clients` threads, a connection per post; rates and
    latencies of the whole run."""
    latencies: list[float] = []
    errors: list[str] = []
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    lock = threading.Lock()
    requests = [raw_request(port, api_key, body) for body in bodies]
    next_index = iter(range(len(requests)))

    def client() -> None:
        mine: list[float] = []
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            started = time.perf_counter()
            status, body = post_raw(port, requests[i])
            mine.append(time.perf_counter() - started)
            if status not in (200, 201):
                with lock:
                    errors.append(f"{status} {body[:200]!r}")
                continue
            result = json.loads(body)
            with lock:
                for key in counts:
                    counts[key] += result[key]
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    groups = pids() if pids else {}
    before = {kind: cpu_by_pid(group) for kind, group in groups.items()}
    client_before = time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    after = pids() if pids else {}
    by_kind = {kind: cpu_since(before[kind], group) for kind, group in after.items()}
    client_cpu = time.process_time() - client_before
    cpu = sum(by_kind.values()) + client_cpu
    if errors:
        raise RuntimeError(f"{len(errors)} failed posts, first: {errors[0]}")
    return {
        "requests": len(bodies),
        "clients": clients,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(bodies) / elapsed, 1),
        "readings_per_s": round(counts["accepted"] / elapsed, 1),
        "cpu_s": round(cpu, 3),
        "client_cpu_s": round(client_cpu, 3),
        **{f"{kind}_cpu_s": round(value, 3) for kind, value in by_kind.items()},
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        **counts,
    }


def copy_rows(database_url: str, site_pk: int, first: int, count: int) -> dict:
    """Binary COPY of `count` readings (and their unit and charger rows) into the same tables."""
    received = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.commit()
        cpu_before = cpu_s([backend]) + time.process_time()
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence('telemetry_telemetryreading', 'id')) "
                "FROM generate_series(1, %s)",
                [count],
            )
            ids = [row[0] for row in cur.fetchall()]
            with cur.copy(
                "COPY telemetry_telemetryreading (id, site_id, timestamp, message_id, "
                "received_at, backfilled, battery_soc_pct, battery_power_kw, grid_import_kw, "
                "grid_export_kw, chargers_power_kw) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(
                    [
                        "int8",
                        "int8",
                        "timestamptz",
                        "varchar",
                        "timestamptz",
                        "bool",
                        "float8",
                        "float8",
                        "float8",
                        "float8",
                        "float8",
                    ]
                )
                for reading_id, n in zip(ids, range(first, first + count), strict=True):
                    copy.write_row(
                        (
                            reading_id,
                            site_pk,
                            T0 + timedelta(seconds=n),
                            f"copy-{n}",
                            received,
                            False,
                            50.0 + n % 40,
                            -25.0,
                            35.0,
                            0.0,
                            150.0,
                        )
                    )
            stamps = [T0 + timedelta(seconds=n) for n in range(first, first + count)]
            with cur.copy(
                "COPY telemetry_batteryunitvalue (reading_id, timestamp, unit_code, soc_pct, "
                "power_kw) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "timestamptz", "varchar", "float8", "float8"])
                for reading_id, ts in zip(ids, stamps, strict=True):
                    copy.write_row((reading_id, ts, "BAT1", 64.8, -12.5))
                    copy.write_row((reading_id, ts, "BAT2", 65.2, -12.5))
            with cur.copy(
                "COPY telemetry_chargervalue (reading_id, timestamp, charger_code, power_kw, "
                "status, energy_kwh) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "timestamptz", "varchar", "float8", "varchar", "float8"])
                for reading_id, ts in zip(ids, stamps, strict=True):
                    copy.write_row((reading_id, ts, "CHG1", 150.0, "charging", 12.3))
        conn.commit()
        elapsed = time.perf_counter() - started
        cpu = cpu_s([backend]) + time.process_time() - cpu_before
    return {
        "readings": count,
        "seconds": round(elapsed, 3),
        "cpu_s": round(cpu, 3),
        "readings_per_s": round(count / elapsed, 1),
    }


def merge(runs: list[dict]) -> dict:
    """Totals over the rounds; latencies as the median of the rounds' percentiles."""
    seconds = sum(r["seconds"] for r in runs)
    readings = sum(r.get("accepted", r.get("readings", 0)) for r in runs)
    cpu = sum(r["cpu_s"] for r in runs)
    out = {
        "rounds": len(runs),
        "readings": readings,
        "seconds": round(seconds, 3),
        "readings_per_s": round(readings / seconds, 1),
        # CPU of client, gunicorn and PostgreSQL backends per reading: what a reading costs the
        # machine whatever else runs beside; the projection assumes two otherwise idle cores.
        "cpu_ms_per_reading": round(cpu / readings * 1000, 4),
        "projected_readings_per_s_on_2_idle_cores": round(2 * readings / cpu, 1),
        # How many of the machine's cores the run kept busy on average (all processes measured).
        "cores_busy": round(cpu / seconds, 2),
    }
    # Where each reading's CPU goes: the bench's clients, gunicorn, PostgreSQL and Redis.
    for kind in ("client", "gunicorn", "postgres", "redis"):
        if f"{kind}_cpu_s" in runs[0]:
            spent = sum(r[f"{kind}_cpu_s"] for r in runs)
            out[f"{kind}_cpu_ms_per_reading"] = round(spent / readings * 1000, 4)
    for key in ("p50_ms", "p99_ms"):
        if key in runs[0]:
            out[key] = statistics.median(r[key] for r in runs)
    if "duplicate" in runs[0]:
        out["duplicate"] = sum(r["duplicate"] for r in runs)
        out["rejected"] = sum(r["rejected"] for r in runs)
    return out


def serve_floor(log_dir: Path) -> tuple[Proc, int]:
    """bench.http_floor under gunicorn with the same workers and threads as Enexa."""
    port = free_port()
    args = ["-m", "gunicorn", "bench.http_floor:application", "-b", f"127.0.0.1:{port}"]
    args += ["-w", str(WORKERS), "--threads", str(THREADS), "--log-level", "warning"]
    proc = Proc("http-floor", [sys.executable, *args], log_dir)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_until(listening, 60, what="the HTTP floor's gunicorn")
    return proc, port


def main() -> dict:
    """Rounds of (single posts, batches, COPY), interleaved so that load from elsewhere on the
    machine weighs on all three alike; the ratio is the median of the rounds' ratios."""
    base = os.environ.get("DATABASE_URL", "")
    base = base if base.startswith("postgres") else DEFAULT_URL
    name = f"enexa_bench_{uuid.uuid4().hex[:8]}"
    database_url = base.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    server = None
    singles, batches, copies, ratios, floors = [], [], [], [], []
    floor = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            server = BareEnexa(
                database_url,
                Path(tmp),
                sites=("SITE001", "SITE002", "SITE003"),
                workers=WORKERS,
                threads=THREADS,
                # Capacity is measured here, not the per-principal rate limits (which count a
                # batch's items): one bench key posts far beyond a gateway's share, so its limit
                # is raised out of reach. It is still counted in Redis on every call, as in
                # production, so the throttle's round trip is part of the figure.
                controllers=True,
                extra_env={
                    "REDIS_URL": REDIS_URL,
                    "ENEXA_RATE_LIMITS": "user=1000000000/min,controller=1000000000/min",
                },
            )
            # Gateways post with their controller's API key: SITE001's for single readings,
            # SITE002's for batches.
            single_key, batch_key = server.api_keys["SITE001"], server.api_keys["SITE002"]
            with psycopg.connect(database_url) as conn:
                site_pk = conn.execute(
                    "SELECT id FROM registry_site WHERE code = 'SITE003'"
                ).fetchone()[0]
            per_round = SINGLE_POSTS // ROUNDS
            warm = [json.dumps(reading(n)).encode() for n in range(-300, 0)]
            run_clients(server.port, single_key, warm, SINGLE_CLIENTS)
            master = server.proc.popen.pid
            floor, floor_port = serve_floor(Path(tmp))
            floor_master = floor.popen.pid

            def floor_pids() -> dict[str, list[int]]:
                return {"gunicorn": server_pids(floor_master, database_url)["gunicorn"]}

            def pids() -> dict[str, list[int]]:
                return server_pids(master, database_url)

            for r in range(ROUNDS):
                single_bodies = [
                    json.dumps(reading(r * per_round + n)).encode() for n in range(per_round)
                ]
                first = r * BATCHES_PER_ROUND * BATCH_SIZE
                batch_bodies = [
                    json.dumps(
                        {
                            "items": [
                                reading(first + b * BATCH_SIZE + i, "SITE002")
                                for i in range(BATCH_SIZE)
                            ]
                        }
                    ).encode()
                    for b in range(BATCHES_PER_ROUND)
                ]
                singles.append(
                    run_clients(server.port, single_key, single_bodies, SINGLE_CLIENTS, pids)
                )
                floors.append(
                    run_clients(floor_port, single_key, single_bodies, SINGLE_CLIENTS, floor_pids)
                )
                batches.append(
                    run_clients(server.port, batch_key, batch_bodies, BATCH_CLIENTS, pids)
                )
                copies.append(
                    copy_rows(database_url, site_pk, first, BATCHES_PER_ROUND * BATCH_SIZE)
                )
                ratios.append(batches[-1]["readings_per_s"] / copies[-1]["readings_per_s"])
    finally:
        if floor is not None:
            floor.stop()
        if server is not None:
            server.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    single, batched, copied, floored = merge(singles), merge(batches), merge(copies), merge(floors)
    ratio = statistics.median(ratios)
    load = os.getloadavg()[0]
    results = {
        "machine_cpus": os.cpu_count(),
        "load_average_1m_at_end": round(load, 2),
        "gunicorn": {"workers": WORKERS, "threads": THREADS},
        "single_posts": {**single, "clients": SINGLE_CLIENTS},
        "batches_of_1000": {**batched, "clients": BATCH_CLIENTS},
        "copy_binary": copied,
        # The same clients and bodies against a bare Django view on the same gunicorn.
        "http_floor": {**floored, "clients": SINGLE_CLIENTS},
        "single_to_http_floor_ratio": round(
            single["readings_per_s"] / floored["readings_per_s"], 3
        ),
        "batched_to_copy_ratio": round(ratio, 3),
        "batched_to_copy_ratio_by_cpu": round(
            copied["cpu_ms_per_reading"] / batched["cpu_ms_per_reading"], 3
        ),
        "ratio_per_round": [round(x, 3) for x in ratios],
        "targets": {
            "single_posts_readings_per_s": SINGLE_TARGET_PER_S,
            "single_posts_p99_ms": P99_TARGET_MS,
            "batched_to_copy_ratio": RATIO_TARGET,
        },
        "targets_met": {
            "single_posts": single["readings_per_s"] >= SINGLE_TARGET_PER_S,
            "single_posts_p99": single["p99_ms"] < P99_TARGET_MS,
            "batched_ratio": ratio >= RATIO_TARGET,
        },
        "uptime": uptime(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"single posts : {single['readings_per_s']:>9.1f} readings/s  "
        f"p50 {single['p50_ms']} ms  p99 {single['p99_ms']} ms  ({SINGLE_CLIENTS} clients)"
    )
    print(
        f"batches 1000 : {batched['readings_per_s']:>9.1f} readings/s  "
        f"p50 {batched['p50_ms']} ms  p99 {batched['p99_ms']} ms  ({BATCH_CLIENTS} clients)"
    )
    print(f"binary COPY  : {copied['readings_per_s']:>9.1f} readings/s")
    print(
        f"HTTP floor   : {floored['readings_per_s']:>9.1f} posts/s  p50 {floored['p50_ms']} ms  "
        f"p99 {floored['p99_ms']} ms  (a bare Django view, same gunicorn and clients; single "
        f"posts reach {results['single_to_http_floor_ratio']:.2f} of it)"
    )
    runs = (("single", single), ("batched", batched), ("COPY", copied), ("floor", floored))
    for label, run in runs:
        split = ", ".join(
            f"{kind} {run[f'{kind}_cpu_ms_per_reading']:.4f}"
            for kind in ("gunicorn", "postgres", "redis", "client")
            if f"{kind}_cpu_ms_per_reading" in run
        )
        print(
            f"  {label:8} CPU {run['cpu_ms_per_reading']:.4f} ms/reading -> "
            f"{run['projected_readings_per_s_on_2_idle_cores']:.0f}/s on 2 idle cores, "
            f"{run['cores_busy']:.2f} cores busy" + (f" ({split})" if split else "")
        )
    print(
        f"batched / COPY ratio: {ratio:.3f} (median of {ROUNDS} rounds, target >= "
        f"{RATIO_TARGET}); {results['uptime']}; results in {RESULTS}"
    )
    met = results["targets_met"]
    print(
        f"targets: single posts >= {SINGLE_TARGET_PER_S}/s "
        f"{'met' if met['single_posts'] else 'NOT met'}, p99 < {P99_TARGET_MS} ms "
        f"{'met' if met['single_posts_p99'] else 'NOT met'}, batched/COPY >= {RATIO_TARGET} "
        f"{'met' if met['batched_ratio'] else 'NOT met'}"
    )
    return results


if __name__ == "__main__":
    main()
