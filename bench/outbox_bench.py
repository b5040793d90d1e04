"""Outbox cost: a durable add (fsync per commit), a batch add, a flush step, an add at the bound.

Results in bench/results/outbox.json; the disk is whatever the temporary directory is on."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from amperio.telemetry.outbox import Outbox

RESULTS = Path(__file__).parent / "results" / "outbox.json"
ROUNDS = 300


def _reading(i: int) -> dict:
    return {
        "site_id": "SITE001",
        "timestamp": "2026-01-15T10:00:00Z",
        "message_id": f"bench-{i}",
        "battery": {"soc_pct": 55.0, "power_kw": -20.0},
        "grid": {"import_kw": 120.0, "export_kw": 0.0},
        "chargers": [{"id": "CHG1", "power_kw": 150.0, "status": "charging"}],
    }


def _ms(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "median_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1000, 3),
    }


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.sqlite3")
        single = [_timed(lambda i=i: box.add_reading(_reading(i))) for i in range(ROUNDS)]
        batch = [
            _timed(lambda i=i: box.add_readings([_reading(i * 100 + j) for j in range(100)]))
            for i in range(ROUNDS // 10)
        ]

        def flush_step() -> None:
            items = box.next_batch("reading", 500)
            box.ack(item.key for item in items)

        flush = [_timed(flush_step) for _ in range(6)]  # 3300 readings: six full batches

        full = Outbox(Path(tmp) / "full.sqlite3", max_readings=100_000)
        for start in range(0, 100_000, 5000):
            full.add_readings([_reading(i) for i in range(start, start + 5000)])
        at_bound = [_timed(lambda i=i: full.add_reading(_reading(10**6 + i))) for i in range(200)]
        report = full.take_thinning_report() or {}

    results = {
        "add_reading": _ms(single),
        "add_readings_100": _ms(batch),
        "next_batch_500_and_ack": _ms(flush),
        "add_reading_at_bound_100k": _ms(at_bound),
        "thinned_at_bound": report.get("thinned", 0),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
