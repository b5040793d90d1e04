"""Real processes for integration tests: Enexa server, simulator, Amperio; ports bound on 127.0.0.1.

Each process logs to a file under the test's tmp dir, and is stopped in `finally` by its owner."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    interval_s: float = 0.1,
    what: str = "condition",
):
    """Poll `predicate` until it returns something truthy; fail after `timeout_s`."""
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
    """A child process with its output in a log file."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None
    ):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

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
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


@contextmanager
def enexa_database(tmp_path: Path) -> Iterator[str]:
    """A fresh database for a live Enexa: its own PostgreSQL database when DATABASE_URL points at
    PostgreSQL (as in CI), else a SQLite file."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        yield f"sqlite:///{tmp_path / 'enexa-live.sqlite3'}"
        return
    import psycopg

    name = f"enexa_it_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class LiveEnexa:
    """A migrated Enexa with the demo data, served by gunicorn on a free port."""

    def __init__(self, database_url: str, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_password = "admin-" + uuid.uuid4().hex
        self.env = {
            "DJANGO_SETTINGS_MODULE": "enexa.settings.dev",
            "DEBUG": "0",
            "DATABASE_URL": database_url,
            "ENEXA_VAR_DIR": str(log_dir / "enexa-var"),
            "ENEXA_DEMO_ADMIN_PASSWORD": self.admin_password,
            "ENEXA_DEMO_OPERATOR_PASSWORD": "operator-" + uuid.uuid4().hex,
            **(extra_env or {}),
        }
        run_manage("migrate", "--noinput", env=self.env)
        run_manage("seed_demo", env=self.env)
        self.log_dir = log_dir
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        self.proc = Proc(
            f"enexa-{self.port}",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "enexa.wsgi",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                "2",
                "--threads",
                "4",
                "--graceful-timeout",
                "2",
            ],
            self.log_dir,
            self.env,
        )
        wait_until(
            lambda: requests.get(f"{self.url}/v1/health", timeout=1).ok, 30, what="Enexa health"
        )

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def staff_token(self) -> str:
        response = requests.post(
            f"{self.url}/v1/auth/token",
            timeout=5,
            json={"username": "admin", "password": self.admin_password},
        )
        response.raise_for_status()
        return response.json()["access"]
