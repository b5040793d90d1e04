"""Modbus snapshot cost: requests per full telemetry snapshot and its time vs one round trip.

The simulator runs in its own process, as a unit would, so its work does not share our GIL."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from amperio.modbus.client import ChargePostClient

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "modbus.json"
ROUNDS = 500
TARGET_ROUND_TRIPS = 3


def _timed_s(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _interleaved_medians_s(first: Callable[[], object], second: Callable[[], object]):
    """Median times of two actions run alternately, so load from other processes hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(ROUNDS):
        times[0].append(_timed_s(first))
        times[1].append(_timed_s(second))
    return statistics.median(times[0]), statistics.median(times[1])


def _start_simulator(port_file: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "amperio.simulator", "--port", "0", "--port-file", str(port_file)]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("simulator did not start within 20 s")


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = _start_simulator(Path(tmp) / "port")
        try:
            with ChargePostClient("127.0.0.1", port) as client:
                client.read_snapshot()  # connect and warm up
                before = client.requests_sent
                client.read_snapshot()
                requests = client.requests_sent - before
                round_trip_s, snapshot_s = _interleaved_medians_s(
                    lambda: client.read(["system_state"]), client.read_snapshot
                )
                registers = len(client.map.readable())
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    result = {
        "registers_in_snapshot": registers,
        "requests_per_snapshot": requests,
        "one_register_round_trip_ms": round(round_trip_s * 1000, 3),
        "snapshot_ms": round(snapshot_s * 1000, 3),
        "snapshot_in_round_trips": round(snapshot_s / round_trip_s, 2),
        "target_round_trips": TARGET_ROUND_TRIPS,
        "rounds": ROUNDS,
    }
    result["meets_target"] = result["snapshot_in_round_trips"] <= TARGET_ROUND_TRIPS
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
