"""`amperio run` starts the worker, watchdog worker, beat and API, and Ctrl-C stops them all."""

import json
import signal
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.harness import Proc, free_port, wait_until


def processes_with(marker: str) -> list[int]:
    """Pids whose environment carries `marker` (our own children only carry it)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.integration
def test_run_starts_everything_and_ctrl_c_stops_all_of_it(tmp_path):
    state_dir = tmp_path / "amperio-run-state"
    state_dir.mkdir()
    (state_dir / "config.json").write_text(json.dumps({"version": 1, "limits": {}}))
    port = free_port()
    run = Proc(
        "amperio-run",
        [sys.executable, "-m", "amperio", "run", "--bind", f"127.0.0.1:{port}",
         "--log-dir", str(tmp_path)],
        tmp_path,
        {"AMPERIO_STATE_DIR": str(state_dir), "AMPERIO_MODBUS_PORT": str(free_port())},
    )  # fmt: skip
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok,
            60,
            what="Amperio API",
        )
        for name in ("worker", "watchdog-worker", "beat"):
            wait_until(lambda n=name: (tmp_path / f"{n}.log").exists(), 30, what=name)
        assert len(processes_with(str(state_dir))) >= 5  # run, 3 Celery processes, gunicorn
        run.popen.send_signal(signal.SIGINT)  # Ctrl-C reaches the foreground process
        run.popen.wait(timeout=60)
        wait_until(lambda: processes_with(str(state_dir)) == [], 30, what="all stopped")
    finally:
        run.stop()
