"""A live Enexa for the integration tests and benches: its database, its server (gunicorn on a
free port of 127.0.0.1) and the demo data. Each process logs to a file under the caller's
directory, and is stopped in `finally` by its owner."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from amperio.procs import REPO_DIR, Proc, free_port, wait_until


def run_manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR), **env},
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def unthrottled_env() -> dict[str, str]:
    """Tests post many readings as one principal; a throttling test passes its own limits.
    Each server gets its own counters, so one never leaks into another's."""
    return {
        "ENEXA_RATE_LIMITS": "controller=1000000/min,user=1000000/min,anon=1000000/min,"
        "auth_failure=1000000/min",
        "ENEXA_RATE_LIMIT_PREFIX": f"enexa-it:{uuid.uuid4().hex[:8]}",
    }


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


def serve_enexa(
    port: int, log_dir: Path, env: dict[str, str], *, workers: int = 2, threads: int = 4
) -> Proc:
    """gunicorn serving Enexa on 127.0.0.1:`port`, once its health answers."""
    proc = Proc(
        f"enexa-{port}",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "enexa.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "--keep-alive",
            "30",
            "--graceful-timeout",
            "2",
        ],
        log_dir,
        env,
    )
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok,
            30,
            what="Enexa health",
        )
    except TimeoutError:
        proc.stop()
        raise
    return proc


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
            **unthrottled_env(),
            **(extra_env or {}),
        }
        run_manage("migrate", "--noinput", env=self.env)
        run_manage("seed_demo", env=self.env)
        self.log_dir = log_dir
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        self.proc = serve_enexa(self.port, self.log_dir, self.env)

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
        return str(response.json()["access"])
