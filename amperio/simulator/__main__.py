"""Run ChargePost simulators by hand: `python -m amperio.simulator --port 5020 [--units 2]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from amperio.simulator.physics import ChargePostState
from amperio.simulator.server import ChargePostSimulator


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m amperio.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020, help="first port (0: any free port)")
    parser.add_argument("--units", type=int, default=1, help="units on consecutive ports")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the ports, one a line, here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C stops it even when started with SIGINT ignored (a background job: `... &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    simulators = []
    try:
        for n in range(args.units):
            port = args.port + n if args.port else 0
            state = ChargePostState(seed=args.seed + n, serial=f"CP-SIM-{n + 1:04d}")
            sim = ChargePostSimulator(args.host, port, speed=args.speed, state=state)
            simulators.append(sim.start())
            print(f"ChargePost {state.serial} listening on {args.host}:{sim.port}", flush=True)
        if args.port_file:
            args.port_file.write_text("".join(f"{s.port}\n" for s in simulators))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    finally:
        for sim in simulators:
            sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
