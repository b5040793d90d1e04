"""`amperio run` starts a site gateway (worker, watchdog worker and beat, and no API: nothing
connects in to a gateway); Ctrl-C, SIGTERM or SIGHUP stops them all, and so does one of them
dying."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amperio.procs import REPO_DIR, Proc, free_port, wait_until
from tests.processes import command_line, processes_with

pytestmark = pytest.mark.integration


def run_command(tmp_path) -> tuple[list[str], dict[str, str], str]:
    """`amperio run` with its state (the marker of its processes) under tmp_path."""
    state_dir = tmp_path / "amperio-run-state"
    state_dir.mkdir()
    (state_dir / "config.json").write_text(json.dumps({"version": 1, "limits": {}}))
    command = [sys.executable, "-m", "amperio", "run", "--log-dir", str(tmp_path)]
    env = {"AMPERIO_STATE_DIR": str(state_dir), "AMPERIO_MODBUS_PORT": str(free_port())}
    return command, env, str(state_dir)


def listening_sockets(pids: list[int]) -> list[int]:
    """The TCP sockets in LISTEN state that `pids` hold open (their inodes)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening.add(fields[9])
    held = []
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in listening:
                held.append(int(target[8:-1]))
    return held


def wait_for_everything(tmp_path, marker: str) -> None:
    for name in ("worker", "watchdog-worker"):
        wait_until(
            lambda n=name: "ready" in (tmp_path / f"{n}.log").read_text(), 60, what=f"{name} ready"
        )
    wait_until(lambda: (tmp_path / "beat.log").exists(), 30, what="beat")
    assert len(processes_with(marker)) >= 4  # run and its 3 Celery processes


def assert_all_stopped(marker: str) -> None:
    wait_until(lambda: processes_with(marker) == [], 30, what="all stopped")


def test_a_gateway_listens_on_no_port(tmp_path):
    command, env, marker = run_command(tmp_path)
    run = Proc("amperio-run", command, tmp_path, env)
    try:
        wait_for_everything(tmp_path, marker)
        assert listening_sockets(processes_with(marker)) == []
    finally:
        run.stop()


def test_run_started_in_the_background_starts_everything_and_ctrl_c_stops_all_of_it(tmp_path):
    command, env, marker = run_command(tmp_path)
    # Started as `make test &` starts it: with SIGINT ignored, which it must undo.
    run = subprocess.Popen(
        command,
        cwd=REPO_DIR,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR), **env},
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        wait_for_everything(tmp_path, marker)
        run.send_signal(signal.SIGINT)  # Ctrl-C reaches the foreground process
        assert run.wait(timeout=60) == 0
        assert_all_stopped(marker)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_run_and_everything_it_started(tmp_path, sig):
    command, env, marker = run_command(tmp_path)
    run = Proc("amperio-run", command, tmp_path, env)
    try:
        wait_for_everything(tmp_path, marker)
        run.popen.send_signal(sig)  # to `amperio run` alone, as systemd or a closed terminal
        assert run.popen.wait(timeout=60) == 0
        assert_all_stopped(marker)
    finally:
        run.stop()


def test_when_one_process_dies_run_stops_the_others_and_names_it_with_its_log(tmp_path):
    command, env, marker = run_command(tmp_path)
    run = Proc("amperio-run", command, tmp_path, env)
    try:
        wait_for_everything(tmp_path, marker)
        beat = next(pid for pid in processes_with(marker) if " beat " in command_line(pid))
        os.kill(beat, signal.SIGKILL)
        assert run.popen.wait(timeout=60) == 1
        assert f"beat exited (code -9); its log: {tmp_path / 'beat.log'}" in run.log()
        assert_all_stopped(marker)
    finally:
        run.stop()
