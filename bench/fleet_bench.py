"""The fleet: 10 and then 50 simulated sites, telemetry at 1 s from every site and commands to
every site at once, through the whole path of a fleet.

Processes: Enexa (gunicorn, its Celery worker on Redis), the Amperio backend API (gunicorn, the
shared store on PostgreSQL, commands published on RabbitMQ in a vhost of this run), and one
"fleet gateway" process that runs the real gateway code for every site (the control cycle and
the outbox flush each second, and the commands of every site queue, each into its own site's
command table and ChargePost); in production each gateway runs its own site worker. The
simulated ChargePosts are in this process, on consecutive ports, and note when each register
write arrives. The backend's limits are seeded into its store (no backend worker: the bench
measures the command path, not the reports).

Figures per fleet size: readings stored per second (Enexa's table, over the run), readings
lost (read on a site and never stored: must be 0), commands misrouted (a value written on a
ChargePost other than its site's: must be 0), and dispatch latency from just before Enexa's
`POST /v1/sites/{id}/commands` to the simulator taking the register write (median, p99; target
p99 < 100 ms at 50 sites). The floor, in the same run: a `GET /v1/health` to Enexa from as many
concurrent clients, the cheapest request through the same gunicorn. Writes
bench/results/fleet.json with the load average."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests

from amperio.procs import Proc, free_port, port_available, wait_until
from amperio.simulator.physics import ChargePostState
from amperio.simulator.server import ChargePostSimulator
from demo.bare_enexa import BareEnexa
from demo.enexa import enexa_worker_args

# BENCH_FLEET_SIZES=3 for a quick look.
SIZES = tuple(int(n) for n in os.environ.get("BENCH_FLEET_SIZES", "10,50").split(","))
ROUND_EVERY_S = 2.0
TELEMETRY_INTERVAL_S = 1.0
TARGET_P99_MS = 100.0
GRID_REGISTER = "site_grid_limit_kw"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
RABBITMQ = "127.0.0.1:5672"
RESULTS = Path(__file__).parent / "results" / "fleet.json"
LIMITS = {
    "battery": {"max_charge_kw": 220, "max_discharge_kw": 220, "units": {}},
    "chargers": {"CHG1": {"max_power_kw": 300}},
    "grid": {"limit_kw": 400},
}
CONFIG = {
    "version": 1,
    "settings": {"setpoint_validity_s": 600, "telemetry": {"interval_s": 1}},
    "limits": LIMITS,
}


def rounds(size: int) -> int:
    """Commands per site: at least 300 commands per fleet size (BENCH_FLEET_ROUNDS to choose)."""
    return int(os.environ.get("BENCH_FLEET_ROUNDS", 0)) or max(6, -(-300 // size))


def site_code(n: int) -> str:
    return f"SITE{n + 1:03d}"


def limit_kw(site: int, round_: int) -> float:
    """Unique among the sites of a round, and never a site's value of the round before."""
    return float((200 if round_ % 2 == 0 else 300) + site)


class TimedState(ChargePostState):
    """The simulated unit, noting when each grid limit write arrives."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.grid_writes: list[tuple[float, float]] = []  # (value, perf_counter)

    def apply_write(self, name, value):
        if name == GRID_REGISTER:
            self.grid_writes.append((float(value), time.perf_counter()))
        super().apply_write(name, value)


def consecutive_ports(count: int) -> int:
    """The first of `count` free consecutive ports."""
    for _ in range(50):
        first = free_port()
        if first + count < 65000 and all(port_available(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


# -- the fleet gateway process -----------------------------------------------------------------


def run_gateways(spec_path: str) -> None:
    """Every site's gateway code in one process: a telemetry tick per second for each site
    (control cycle and flush), and a consumer of every site queue, each command handed to its
    own site's gateway. Prints the readings each site produced when told to stop (SIGTERM)."""
    from kombu import Connection, Consumer

    from amperio import gateway
    from amperio.celery import site_queue
    from amperio.gateway import Gateway
    from amperio.settings import load

    # A command or cycle that fails in a thread says so in this process's log.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    spec = json.loads(Path(spec_path).read_text())
    base = load()
    gateways: dict[str, Gateway] = {}
    for site in spec["sites"]:
        state_dir = Path(site["state_dir"])
        gateways[site["id"]] = Gateway(
            replace(
                base,
                site_id=site["id"],
                enexa_url=spec["enexa_url"],
                state_dir=state_dir,
                key_file=state_dir / "api_key",
                modbus_port=site["port"],
                broker_url=spec["broker_url"],
                backlog_delay_s=(0.0, 0.0),
            )
        )
    produced = dict.fromkeys(gateways, 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pool = ThreadPoolExecutor(8)

    def tick(site: str) -> None:
        try:
            result = gateway.run_control_cycle(gateways[site])
            if result and result.get("read"):
                produced[site] += 1
            gateway.flush_outbox(gateways[site])
        except Exception:
            logging.exception("telemetry tick of %s failed", site)

    def receive(data: Any, site: str) -> None:
        try:
            gateway.receive_command(data, gateways[site])
        except Exception:
            logging.exception("command for %s failed", site)

    def telemetry() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            list(pool.map(tick, gateways))
            next_at += TELEMETRY_INTERVAL_S
            stop.wait(max(0.0, next_at - time.monotonic()))

    def on_command(body: Any, message: Any) -> None:
        site = message.delivery_info["routing_key"].removeprefix("amperio.site.")
        args = body[0] if isinstance(body, list | tuple) else []
        commands.submit(receive, args[0], site)
        message.ack()

    commands = ThreadPoolExecutor(16)
    ticker = threading.Thread(target=telemetry, daemon=True)
    ticker.start()
    queues = [site_queue(f"amperio.site.{site}") for site in gateways]
    with Connection(spec["broker_url"]) as conn:
        with Consumer(conn.channel(), queues, callbacks=[on_command], accept=["json"]):
            print("READY", flush=True)
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
    ticker.join(timeout=10)
    # What the outbox still holds goes out before counting (live first, then the rest).
    for _ in range(10):
        for gw in gateways.values():
            gateway.flush_outbox(gw)
        if all(gw.outbox().depth()["readings"] == 0 for gw in gateways.values()):
            break
    print("PRODUCED" + json.dumps(produced), flush=True)


# -- the orchestration -------------------------------------------------------------------------


def rabbitmqctl(*args: str) -> None:
    subprocess.run(  # noqa: S603 - rabbitmqctl with our own arguments
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=True
    )


def fleet_run(size: int, tmp: Path, base_db: str) -> dict[str, Any]:
    sites = [site_code(n) for n in range(size)]
    token = secrets.token_hex(16)
    vhost = f"fleet-bench-{secrets.token_hex(4)}"
    enexa_db = f"enexa_fleet_bench_{uuid.uuid4().hex[:8]}"
    backend_db = f"amperio_fleet_bench_{uuid.uuid4().hex[:8]}"
    server = base_db.rsplit("/", 1)[0]
    with psycopg.connect(base_db, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{enexa_db}"')
        conn.execute(f'CREATE DATABASE "{backend_db}"')
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    broker_url = f"amqp://guest:guest@{RABBITMQ}/{vhost}"
    import redis

    redis.Redis.from_url(REDIS_URL).delete("enexa.delivery", "enexa.periodic")
    first_port = consecutive_ports(size)
    sims = {
        site: ChargePostSimulator(port=first_port + n, speed=0, state=TimedState())
        for n, site in enumerate(sites)
    }
    procs: list[Proc] = []
    enexa = None
    try:
        for sim in sims.values():
            sim.state.watchdog_timeout_s = 3600  # no heartbeat in this bench
            sim.start()
        amperio_port = free_port()
        amperio_url = f"http://127.0.0.1:{amperio_port}"
        # The web processes enqueue on the broker, the worker delivers to the backend.
        enexa = BareEnexa(
            f"{server}/{enexa_db}",
            tmp,
            sites=tuple(sites),
            controllers=True,
            threads=8,
            extra_env={
                "ENEXA_CELERY_BROKER_URL": REDIS_URL,
                "ENEXA_AMPERIO_URL": amperio_url,
                "ENEXA_AMPERIO_TOKEN": token,
            },
        )
        python = sys.executable
        procs.append(
            Proc("enexa-worker", [python, *enexa_worker_args(concurrency=16)], tmp, enexa.env)
        )
        backend_env = {
            "AMPERIO_DATABASE_URL": f"{server}/{backend_db}",
            "AMPERIO_SITES": ",".join(sites),
            "AMPERIO_SERVICE_TOKENS": token,
            "AMPERIO_STATE_DIR": str(tmp / "backend"),
            "AMPERIO_RATE_LIMITS": "service=none",
            "CELERY_BROKER_URL": broker_url,
        }
        procs.append(
            Proc(
                "amperio-api",
                [python, "-m", "amperio", "api", "--bind", f"127.0.0.1:{amperio_port}"],
                tmp,
                backend_env,
            )
        )
        from amperio.backend.store import BackendStore

        store = BackendStore(f"{server}/{backend_db}")
        for site in sites:
            store.record_report(site, datetime.now(UTC), LIMITS, {"status": "ok", "site": {}})
        spec = {"enexa_url": enexa.url, "broker_url": broker_url, "sites": []}
        for site in sites:
            state_dir = tmp / site
            state_dir.mkdir()
            (state_dir / "config.json").write_text(json.dumps(CONFIG))
            (state_dir / "api_key").write_text(enexa.api_keys[site] + "\n")
            spec["sites"].append({"id": site, "state_dir": str(state_dir), "port": sims[site].port})
        spec_path = tmp / "fleet.json"
        spec_path.write_text(json.dumps(spec))
        # The site queues exist before the first command (the backend declares them too).
        gateways = Proc(
            "fleet-gateways",
            [python, "-m", "bench.fleet_bench", "gateways", str(spec_path)],
            tmp,
            {"CELERY_BROKER_URL": broker_url, "AMPERIO_SITE_ID": sites[0]},
        )
        procs.append(gateways)
        wait_until(lambda: "READY" in gateways.log(), 60, 0.2, what="the fleet gateways")
        telemetry_from = time.monotonic()
        wait_until(
            lambda: requests.get(f"{amperio_url}/v1/health", timeout=2).ok, 30, what="Amperio"
        )
        result = measure(enexa, sims, sites, size)
        gateways.signal(signal.SIGTERM)
        telemetry_s = time.monotonic() - telemetry_from
        wait_until(lambda: "PRODUCED" in gateways.log(), 60, 0.5, what="the readings produced")
        produced = json.loads(gateways.log().split("PRODUCED", 1)[1].splitlines()[0])
        with psycopg.connect(f"{server}/{enexa_db}") as conn:
            stored = dict(
                conn.execute(
                    "SELECT s.code, count(*) FROM telemetry_telemetryreading r "
                    "JOIN registry_site s ON s.id = r.site_id GROUP BY s.code"
                ).fetchall()
            )
        # One tick per second for every site: fewer produced means the one fleet-gateway
        # process could not keep up, not that the path lost any.
        result["readings_due_at_1_s"] = round(size * telemetry_s)
        result["readings_produced"] = sum(produced.values())
        result["readings_stored"] = sum(stored.values())
        result["readings_lost"] = sum(max(0, produced[s] - stored.get(s, 0)) for s in sites)
        result["telemetry_seconds"] = round(telemetry_s, 1)
        result["readings_stored_per_s"] = round(result["readings_stored"] / telemetry_s, 1)
        return result
    finally:
        for proc in reversed(procs):
            proc.stop()
        if enexa is not None:
            enexa.stop()
        for sim in sims.values():
            sim.stop()
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)  # noqa: S603, S607
        with psycopg.connect(base_db, autocommit=True) as conn:
            for name in (enexa_db, backend_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(enexa: BareEnexa, sims: dict, sites: list[str], size: int) -> dict[str, Any]:
    """Rounds of one command to every site at once; the latency of each to its write."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {enexa.token()}"
    adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size)
    session.mount("http://", adapter)
    latencies_ms: list[float] = []
    not_written = 0
    floor_ms: list[float] = []

    def post(n: int, round_: int) -> tuple[int, float, float]:
        value = limit_kw(n, round_)
        started = time.perf_counter()
        response = session.post(
            f"{enexa.url}/v1/sites/{sites[n]}/commands",
            json={"command": "set_grid_limit", "params": {"limit_kw": value}},
            timeout=30,
        )
        response.raise_for_status()
        return n, value, started

    def health(_: int) -> float:
        started = time.perf_counter()
        requests.get(f"{enexa.url}/v1/health", timeout=10).raise_for_status()
        return (time.perf_counter() - started) * 1000

    def written_at(site: str, value: float, since: float) -> float | None:
        for got, at in list(sims[site].state.grid_writes):
            if at >= since and abs(got - value) < 0.01:
                return at
        return None

    with ThreadPoolExecutor(size) as pool:
        time.sleep(3.0)  # telemetry settles: every site has read and flushed
        # Round 0 warms up (each process's first connections to the broker and databases).
        for round_ in range(rounds(size) + 1):
            round_start = time.monotonic()
            sent = list(pool.map(lambda n, r=round_: post(n, r), range(size)))
            deadline = time.monotonic() + 15
            pending = {n: (value, started) for n, value, started in sent}
            while pending and time.monotonic() < deadline:
                for n, (value, started) in list(pending.items()):
                    at = written_at(sites[n], value, started)
                    if at is not None:
                        if round_:
                            latencies_ms.append((at - started) * 1000)
                        del pending[n]
                time.sleep(0.005)
            not_written += len(pending)
            floor_ms += list(pool.map(health, range(size)))
            time.sleep(max(0.0, ROUND_EVERY_S - (time.monotonic() - round_start)))
    own = {site: {limit_kw(n, 0), limit_kw(n, 1)} for n, site in enumerate(sites)}
    every_value = set().union(*own.values())
    misrouted = sum(
        1
        for site in sites
        for value, _ in sims[site].state.grid_writes
        if value in every_value - own[site]
    )
    return {
        "sites": size,
        "commands": len(latencies_ms) + not_written,  # after the warm-up round
        "commands_not_written_within_15_s": not_written,
        "commands_misrouted": misrouted,
        "dispatch_p50_ms": round(statistics.median(latencies_ms), 1),
        "dispatch_p99_ms": round(percentile(latencies_ms, 99), 1),
        "dispatch_max_ms": round(max(latencies_ms), 1),
        "floor_health_p50_ms": round(statistics.median(floor_ms), 1),
        "floor_health_p99_ms": round(percentile(floor_ms, 99), 1),
    }


def main() -> None:
    base = os.environ.get("DATABASE_URL", "")
    base = base if base.startswith("postgres") else DEFAULT_DB
    load_before = os.getloadavg()
    runs = []
    for size in SIZES:
        with tempfile.TemporaryDirectory(prefix=f"fleet-bench-{size}-") as tmp:
            run = fleet_run(size, Path(tmp), base)
        run["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(run), flush=True)
        runs.append(run)
    biggest = runs[-1]
    result = {
        "what": "a fleet: telemetry at 1 s from every site, one command to every site at once "
        "per round, Enexa's POST to the ChargePost register write",
        "layout": "one fleet-gateway process runs every site's gateway code (control cycle, "
        "flush, and a consumer of every site queue); in production each gateway runs its own "
        "site worker",
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "runs": runs,
        "target_p99_ms": TARGET_P99_MS,
        "p99_within_target_at_50": biggest["dispatch_p99_ms"] < TARGET_P99_MS,
        "lost_and_misrouted_zero": all(
            r["readings_lost"] == 0 and r["commands_misrouted"] == 0 for r in runs
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["gateways"]:
        run_gateways(sys.argv[2])
    else:
        main()
