"""Kill -9 a child at a random moment: what the crash-safety tests of the outbox and the
flusher do to a writer."""

import os
import random
import signal
import subprocess
import sys
import threading
import time

from amperio.procs import REPO_DIR


def kill_at_random_moment(
    code: str, args: list[str], rng: random.Random, max_delay_s: float, what: str
) -> list[str]:
    """Run `code` in a child Python (the repository on its path), wait for its first line of
    output, let it run `rng.uniform(0, max_delay_s)` s more, then SIGKILL it. Returns every
    line it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout))
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not lines and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lines, f"{what} never printed a line"
        time.sleep(rng.uniform(0.0, max_delay_s))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(timeout=10)
    return lines
