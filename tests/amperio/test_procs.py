"""The process helpers of `amperio run`, `make demo` and the tests: signals that stop a parent
and its children, and the demo's choice of ports."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from amperio.procs import REPO_DIR, Proc, port_available, stop_all, wait_until
from demo.run import pick_port

INTERRUPTIBLE = """
import sys, time
from amperio.procs import stop_on_signals
if sys.argv[1:] == ["reset"]:
    stop_on_signals()
try:
    print("ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt as exc:
    print("stopped by", str(exc) or "Ctrl-C", flush=True)
"""


def start_python(code: str, *args: str, ignoring=()) -> subprocess.Popen:
    """A child Python whose parent ignored the signals in `ignoring` (`make test &`: SIGINT;
    nohup: SIGHUP), so it starts with them ignored; it prints "ready" once running."""

    def inherit_ignored() -> None:
        for sig in ignoring:
            signal.signal(sig, signal.SIG_IGN)

    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO_DIR,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=inherit_ignored,
    )
    assert child.stdout.readline().strip() == "ready"
    return child


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=str)
def test_ctrl_c_sigterm_and_sighup_all_stop_a_program_even_started_as_a_background_job(sig):
    child = start_python(INTERRUPTIBLE, "reset", ignoring=[signal.SIGINT])
    child.send_signal(sig)
    output, _ = child.communicate(timeout=20)
    assert child.returncode == 0
    assert output.strip() == (
        "stopped by Ctrl-C" if sig == signal.SIGINT else f"stopped by {sig.name}"
    )


def test_under_nohup_a_hang_up_is_still_ignored():
    child = start_python(INTERRUPTIBLE, "reset", ignoring=[signal.SIGHUP])
    try:
        child.send_signal(signal.SIGHUP)
        child.send_signal(signal.SIGTERM)  # what stops it, and only after the SIGHUP
        output, _ = child.communicate(timeout=20)
        assert output.strip() == "stopped by SIGTERM"
    finally:
        child.kill()


def test_a_child_started_by_proc_stops_on_ctrl_c_even_when_its_parent_ignores_ctrl_c(tmp_path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in `make test &`
    try:
        proc = Proc("child", [sys.executable, "-c", INTERRUPTIBLE], tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        wait_until(lambda: "ready" in proc.log(), 20, what="the child running")
        proc.popen.send_signal(signal.SIGINT)
        assert proc.popen.wait(timeout=20) == 0
        assert "stopped by Ctrl-C" in proc.log()
    finally:
        proc.stop()


# Asked to stop, it waits (up to 30 s) until all `n` of its kind were asked, then exits 0; it
# exits 3 when the others were not asked in that time, as when stopped one after the other.
STOPS_WITH_OTHERS = """
import pathlib, signal, sys, time
folder, me, n = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def stop(signum, frame):
    (folder / f"asked-{me}").touch()
    deadline = time.monotonic() + 30
    while len(list(folder.glob("asked-*"))) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(0 if len(list(folder.glob("asked-*"))) == n else 3)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_stop_all_asks_every_child_to_stop_before_waiting_for_any(tmp_path):
    """The demo and `amperio run` stop their children together: the slowest one's wind-down,
    not the sum of all of them."""
    procs = [
        Proc(f"child{n}", [sys.executable, "-c", STOPS_WITH_OTHERS, str(tmp_path), str(n), "3"],
             tmp_path, stop_timeout_s=60)
        for n in range(3)
    ]  # fmt: skip
    try:
        for proc in procs:
            wait_until(lambda p=proc: "ready" in p.log(), 30, what=f"{proc.name} running")
        stop_all(procs)
        assert [proc.popen.returncode for proc in procs] == [0, 0, 0]
    finally:
        for proc in procs:
            proc.stop(timeout_s=0)


def listener(reuse: bool = True) -> socket.socket:
    """A listening socket as gunicorn opens one (SO_REUSEADDR)."""
    sock = socket.socket()
    if reuse:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def port_left_by_a_stopped_server() -> int:
    """A port whose server closed a connection and stopped: the closed connection lingers
    (TIME_WAIT), as after stopping the demo and starting it again at once."""
    server = listener()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server closes first, so its end of the connection lingers
    assert client.recv(1) == b""
    client.close()
    server.close()
    return port


def test_a_port_right_after_its_server_stopped_is_available_again():
    port = port_left_by_a_stopped_server()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what made a quick restart move Enexa elsewhere
    assert port_available(port)


def test_a_port_a_server_listens_on_is_not_available():
    with listener() as server:
        assert not port_available(server.getsockname()[1])


def test_the_demo_keeps_its_port_after_a_quick_restart(monkeypatch, capsys):
    monkeypatch.delenv("ENEXA_DEMO_PORT", raising=False)
    port = port_left_by_a_stopped_server()
    assert pick_port("ENEXA_DEMO_PORT", port, "Enexa") == port
    assert capsys.readouterr().out == ""


def test_the_demo_names_the_port_it_uses_when_its_own_is_taken(monkeypatch, capsys):
    monkeypatch.delenv("ENEXA_DEMO_PORT", raising=False)
    with listener() as server:
        taken = server.getsockname()[1]
        port = pick_port("ENEXA_DEMO_PORT", taken, "Enexa")
    assert port != taken
    assert capsys.readouterr().out == (
        f"[demo] port {taken} is taken: Enexa uses port {port} instead "
        "(set ENEXA_DEMO_PORT to choose)\n"
    )
