"""Dispatch latency: from Enexa's request to the ChargePost register write, over Redis.

A live Enexa (gunicorn) delivers each command to Amperio's API, which stores it and queues it
on Redis; a Celery worker writes it to a simulated ChargePost. The time is taken from just
before the request to Enexa until the simulator takes the battery setpoint write.
Writes bench/results/dispatch.json (median and 99th percentile over at least 200 commands)."""

from __future__ import annotations

import json
import os
import queue
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from amperio.modbus import registers
from amperio.procs import Proc, free_port, wait_until
from amperio.simulator.physics import ChargePostState
from amperio.simulator.server import ChargePostSimulator
from demo.enexa import LiveEnexa, enexa_database

COMMANDS = 250
WARMUP = 10
TARGET_MEDIAN_MS = 50.0
RESULTS = Path(__file__).parent / "results" / "dispatch.json"
LIMITS = {
    "battery": {
        "max_charge_kw": 220,
        "max_discharge_kw": 220,
        "units": {
            "BAT1": {"max_charge_kw": 110, "max_discharge_kw": 110},
            "BAT2": {"max_charge_kw": 110, "max_discharge_kw": 110},
        },
    },
    "chargers": {"CHG1": {"max_power_kw": 300}},
    "grid": {"limit_kw": 400},
}


class TimedState(ChargePostState):
    """The simulated unit, noting when each register write arrives."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.writes: queue.Queue[tuple[str, float, float]] = queue.Queue()

    def apply_write(self, name, value):
        self.writes.put((name, float(value), time.perf_counter()))
        super().apply_write(name, value)


def _written(state: TimedState, value: float, timeout_s: float = 10.0) -> float:
    """When the simulator took bat1's setpoint `value`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            name, got, at = state.writes.get(timeout=0.5)
        except queue.Empty:
            continue
        if name == registers.battery_setpoint(1) and abs(got - value) < 0.01:
            return at
    raise TimeoutError(f"bat1 setpoint {value} not written within {timeout_s} s")


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    token = "bench-" + uuid.uuid4().hex
    state = TimedState()
    state.watchdog_timeout_s = 1e6  # no heartbeat in this bench
    sim = ChargePostSimulator(port=0, speed=0, state=state).start()
    amperio_dir = tmp / "amperio"
    amperio_dir.mkdir()
    (amperio_dir / "config.json").write_text(
        json.dumps({"version": 1, "settings": {"setpoint_validity_s": 600}, "limits": LIMITS})
    )
    port = free_port()
    env = {
        "AMPERIO_STATE_DIR": str(amperio_dir),
        "AMPERIO_SITE_ID": "SITE001",
        "AMPERIO_SERVICE_TOKENS": token,
        "CELERY_BROKER_URL": redis_url,
        "AMPERIO_MODBUS_PORT": str(sim.port),
    }
    import redis

    redis.Redis.from_url(redis_url).delete("amperio.site.SITE001")  # nothing left from a run
    python = sys.executable
    procs = [
        Proc("amperio-api", [python, "-m", "amperio", "api", "--bind", f"127.0.0.1:{port}"],
             tmp, env),
        Proc("amperio-worker", [python, "-m", "amperio", "worker", "--pool", "solo"], tmp, env),
    ]  # fmt: skip
    enexa = None
    try:
        with enexa_database(tmp) as database_url:
            enexa = LiveEnexa(
                database_url,
                tmp,
                {
                    "ENEXA_AMPERIO_URL": f"http://127.0.0.1:{port}",
                    "ENEXA_AMPERIO_TOKEN": token,
                    "ENEXA_RATE_LIMITS": "user=none",
                },
            )
            wait_until(
                lambda: requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok,
                30,
                what="Amperio API",
            )
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {enexa.staff_token()}"
            url = f"{enexa.url}/v1/sites/SITE001/commands"
            latencies_ms: list[float] = []
            for i in range(WARMUP + COMMANDS):
                power_kw = float(-100 + (i % 200))  # differs from the one before
                started = time.perf_counter()
                response = session.post(
                    url,
                    json={"command": "set_battery_power", "params": {"power_kw": power_kw}},
                    timeout=10,
                )
                response.raise_for_status()
                written_at = _written(state, power_kw / 2)
                if i >= WARMUP:
                    latencies_ms.append((written_at - started) * 1000)
            enexa.stop()
    finally:
        for proc in reversed(procs):
            proc.stop()
        sim.stop()
    result = {
        "what": "Enexa POST /v1/sites/SITE001/commands to the ChargePost register write",
        "broker": redis_url.rsplit("/", 1)[0],
        "commands": len(latencies_ms),
        "median_ms": round(statistics.median(latencies_ms), 2),
        "p99_ms": round(_percentile(latencies_ms, 99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "target_median_ms": TARGET_MEDIAN_MS,
        "median_within_target": statistics.median(latencies_ms) < TARGET_MEDIAN_MS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
