"""A site gateway's memory: everything `amperio run` starts, together, while it works.

The demo's system (Enexa, the simulator, Amperio's API, the gateway) runs for a minute with
telemetry flowing and a command applied; every 2 s the gateway's process tree is read from
/proc. "Together" is the proportional set size (PSS: a page shared by several processes counted
once, split between them); the sum of resident sizes (RSS, shared pages counted in every
process) is written beside it. Target: under 200 MB. Results in bench/results/gateway_memory.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from amperio.procs import free_port, stop_all
from demo.run import Demo

RESULTS = Path(__file__).parent / "results" / "gateway_memory.json"
TARGET_MB = 200.0
RUN_S = 60.0
SAMPLE_EVERY_S = 2.0


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces; the parent pid follows its ")".
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """Rss and Pss of one process, in kB (0 for a process that has gone)."""
    values = {"Rss": 0, "Pss": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1])
    except OSError:
        pass
    return values


def command_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode() for w in argv if w]
    for word in ("worker", "beat", "run"):
        if word in words:
            queue = words[words.index("-Q") + 1] if "-Q" in words else ""
            return f"{word} {queue}".strip()
    return " ".join(words[1:3])


def sample(root: int) -> dict[str, object]:
    per_process = {pid: memory_kb(pid) for pid in descendants(root)}
    return {
        "pss_mb": round(sum(v["Pss"] for v in per_process.values()) / 1024, 1),
        "rss_mb": round(sum(v["Rss"] for v in per_process.values()) / 1024, 1),
        "processes": {
            f"{pid} {command_name(pid)}": round(v["Pss"] / 1024, 1)
            for pid, v in per_process.items()
        },
    }


def main() -> None:
    work_dir = Path(tempfile.mkdtemp(prefix="gateway-memory-"))
    (work_dir / "logs").mkdir()
    for variable in ("DATABASE_URL", "CELERY_BROKER_URL", "ENEXA_CELERY_BROKER_URL"):
        os.environ.pop(variable, None)  # the demo's setup: SQLite and the embedded brokers
    os.environ["ENEXA_DEMO_PORT"] = str(free_port())  # beside a running demo, if any
    os.environ["AMPERIO_DEMO_API_PORT"] = str(free_port())
    demo = Demo(work_dir)
    try:
        demo.start_enexa()
        demo.start_simulator()
        demo.provision()
        demo.start_amperio()
        demo.show_telemetry()
        demo.show_dispatch()
        gateway = next(p for p in demo.procs if p.name == "amperio")
        samples = []
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline:
            samples.append(sample(gateway.pid))
            time.sleep(SAMPLE_EVERY_S)
    finally:
        stop_all(demo.procs)
        shutil.rmtree(work_dir, ignore_errors=True)

    peak = max(samples, key=lambda s: float(s["pss_mb"]))  # type: ignore[arg-type]
    results = {
        "what": "everything `amperio run` starts (run, site worker, watchdog worker, beat), "
        f"sampled every {SAMPLE_EVERY_S:.0f} s for {RUN_S:.0f} s with telemetry flowing",
        "peak_pss_mb": peak["pss_mb"],
        "rss_sum_mb_at_peak": peak["rss_mb"],
        "last_pss_mb": samples[-1]["pss_mb"],
        "per_process_pss_mb_at_peak": peak["processes"],
        "target_mb": TARGET_MB,
        "target_met": float(peak["pss_mb"]) < TARGET_MB,  # type: ignore[arg-type]
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(
        f"gateway memory: {peak['pss_mb']} MB PSS (RSS sum {peak['rss_mb']} MB), target "
        f"< {TARGET_MB:.0f} MB: {'met' if results['target_met'] else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
