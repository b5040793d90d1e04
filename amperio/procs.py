"""Child processes for `amperio run`, `make demo` and the integration tests: started in their
own process group (a Celery worker has children), logged to a file or the terminal, stopped
together; Ctrl-C, SIGTERM and SIGHUP stop the parent and its children alike."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

REPO_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_available(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now. With SO_REUSEADDR, as gunicorn
    binds: a port whose last connections are still in TIME_WAIT (a quick restart) is free."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ProcessExited(RuntimeError):
    """A child that should still be running has exited: names it and where its output went."""

    def __init__(self, proc: Proc):
        where = f"its log: {proc.log_path}" if proc.log_path else "its output is above"
        super().__init__(f"{proc.name} exited (code {proc.popen.returncode}); {where}")
        self.proc = proc


def check_running(procs: Iterable[Proc]) -> None:
    """Raise ProcessExited for the first of `procs` that is no longer running."""
    for proc in procs:
        if not proc.alive():
            raise ProcessExited(proc)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C's KeyboardInterrupt is, so the one `finally` that
    stops the children runs whichever way the parent is asked to stop."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Make Ctrl-C, SIGTERM and SIGHUP each raise KeyboardInterrupt in the main thread.

    SIGINT is reset even when the parent ignored it: a shell starts background jobs
    (`make demo &`) with SIGINT ignored, and Python then never raises KeyboardInterrupt. SIGHUP
    stays ignored when it is (`nohup`), since surviving the terminal is what nohup asks for."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_stopped)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _raise_stopped)


def ignore_stop_signals() -> None:
    """While the children are being stopped: a second Ctrl-C or a SIGTERM must not cut the
    stop short and leave some of them running."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def _default_signals() -> None:
    """In the child before exec: Ctrl-C and hang-up as the program itself sets them, not as
    inherited from a parent that ignores them (`make test &`, nohup)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    interval_s: float = 0.1,
    what: str = "condition",
) -> Any:
    """Poll `predicate` until it returns something truthy; raise TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except ProcessExited:
            raise  # what was awaited will never come
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached within {timeout_s} s (last error: {last_error!r})")


class Proc:
    """A child process in its own session, its output in `log_dir/<name>.log` (or inherited).

    `stop_timeout_s`: how long `stop()` waits after SIGTERM before SIGKILL; longer for a child
    that stops children of its own (`amperio run`), which a SIGKILL would leave running."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
        stop_timeout_s: float = 10,
    ):
        self.name = name
        self.stop_timeout_s = stop_timeout_s
        self.log_path = log_dir / f"{name}.log" if log_dir else None
        self._log: IO[bytes] | None = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        full_env = {
            **os.environ,
            "PYTHONPATH": str(REPO_DIR),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            args,
            cwd=REPO_DIR,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            start_new_session=True,
            preexec_fn=_default_signals,  # two sigaction calls, no lock: safe beside threads
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the whole process group (a Celery worker has children)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float | None = None) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()
        # Children left behind by a killed leader.
        self.signal(signal.SIGKILL)
        if self._log:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def stop_all(procs: list[Proc]) -> None:
    """Stop `procs` at once: each is asked (SIGTERM, in reverse start order, so consumers hear
    it before what they consume) and they wind down together (a Celery worker finishing its
    task, gunicorn its requests) instead of one after the other; each is killed past its own
    `stop_timeout_s`, counted from the common start."""
    started = time.monotonic()
    for proc in reversed(procs):
        if proc.alive():
            proc.signal(signal.SIGTERM)
    for proc in reversed(procs):
        # One SIGTERM only: a second could reach `amperio run` before it ignores them and cut
        # its own stop short.
        left_s = proc.stop_timeout_s - (time.monotonic() - started)
        try:
            proc.popen.wait(timeout=max(0.0, left_s))
        except subprocess.TimeoutExpired:
            pass
        proc.stop(timeout_s=0)  # closes its log; kills what is left
