"""Child processes for `amperio run`, `make demo` and the integration tests: started in their
own process group (a Celery worker has children), logged to a file or the terminal, stopped
together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

REPO_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached within {timeout_s} s (last error: {last_error!r})")


class Proc:
    """A child process in its own session, its output in `log_dir/<name>.log` (or inherited)."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.name = name
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

    def stop(self, timeout_s: float = 10) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
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
    """Stop in reverse start order, so consumers go before what they consume."""
    for proc in reversed(procs):
        proc.stop()
