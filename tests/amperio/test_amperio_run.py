"""`amperio run` starts the worker, watchdog worker, beat and API; Ctrl-C, SIGTERM or SIGHUP
stops them all, and so does one of them dying."""

import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from amperio.procs import REPO_DIR, Proc, free_port, port_available, wait_until
from tests.processes import command_line, processes_with

pytestmark = pytest.mark.integration


def run_command(tmp_path, port: int) -> tuple[list[str], dict[str, str], str]:
    """`amperio run` on `port` with its state (the marker of its processes) under tmp_path."""
    state_dir = tmp_path / "amperio-run-state"
    state_dir.mkdir()
    (state_dir / "config.json").write_text(json.dumps({"version": 1, "limits": {}}))
    command = [sys.executable, "-m", "amperio", "run", "--bind", f"127.0.0.1:{port}",
               "--log-dir", str(tmp_path)]  # fmt: skip
    env = {"AMPERIO_STATE_DIR": str(state_dir), "AMPERIO_MODBUS_PORT": str(free_port())}
    return command, env, str(state_dir)


def wait_for_everything(tmp_path, port: int, marker: str) -> None:
    wait_until(
        lambda: requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok,
        60,
        what="Amperio API",
    )
    for name in ("worker", "watchdog-worker", "beat"):
        wait_until(lambda n=name: (tmp_path / f"{n}.log").exists(), 30, what=name)
    assert len(processes_with(marker)) >= 5  # run, 3 Celery processes, gunicorn


def assert_all_stopped(marker: str, port: int) -> None:
    wait_until(lambda: processes_with(marker) == [], 30, what="all stopped")
    assert port_available(port)


def test_run_started_in_the_background_starts_everything_and_ctrl_c_stops_all_of_it(tmp_path):
    port = free_port()
    command, env, marker = run_command(tmp_path, port)
    # Started as `make test &` starts it: with SIGINT ignored, which it must undo.
    run = subprocess.Popen(
        command,
        cwd=REPO_DIR,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR), **env},
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        wait_for_everything(tmp_path, port, marker)
        run.send_signal(signal.SIGINT)  # Ctrl-C reaches the foreground process
        assert run.wait(timeout=60) == 0
        assert_all_stopped(marker, port)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_run_and_everything_it_started(tmp_path, sig):
    port = free_port()
    command, env, marker = run_command(tmp_path, port)
    run = Proc("amperio-run", command, tmp_path, env)
    try:
        wait_for_everything(tmp_path, port, marker)
        run.popen.send_signal(sig)  # to `amperio run` alone, as systemd or a closed terminal
        assert run.popen.wait(timeout=60) == 0
        assert_all_stopped(marker, port)
    finally:
        run.stop()


def test_when_one_process_dies_run_stops_the_others_and_names_it_with_its_log(tmp_path):
    port = free_port()
    command, env, marker = run_command(tmp_path, port)
    run = Proc("amperio-run", command, tmp_path, env)
    try:
        wait_for_everything(tmp_path, port, marker)
        beat = next(pid for pid in processes_with(marker) if " beat " in command_line(pid))
        os.kill(beat, signal.SIGKILL)
        assert run.popen.wait(timeout=60) == 1
        assert f"beat exited (code -9); its log: {tmp_path / 'beat.log'}" in run.log()
        assert_all_stopped(marker, port)
    finally:
        run.stop()
