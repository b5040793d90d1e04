"""A live Enexa for the integration tests and benches: its database, its server (gunicorn on a
free port of 127.0.0.1) and the demo data. Each process logs to a file under the caller's
directory, and is stopped in `finally` by its owner."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from amperio.procs import REPO_DIR, Proc, ProcessExited, free_port, stop_all, wait_until


def live_settings() -> str:
    """The settings module of the servers and manage.py runs started here: the dev profile, or
    what ENEXA_LIVE_SETTINGS names (the tests name one with cheap password hashing)."""
    return os.environ.get("ENEXA_LIVE_SETTINGS", "enexa.settings.dev")


# seed_demo's passwords, the same for every copy of the demo database in one run.
DEMO_PASSWORDS = {
    "ENEXA_DEMO_ADMIN_PASSWORD": "admin-" + uuid.uuid4().hex,
    "ENEXA_DEMO_OPERATOR_PASSWORD": "operator-" + uuid.uuid4().hex,
}


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


def _database_name(database_url: str) -> str:
    return database_url.rsplit("/", 1)[1].split("?")[0]


def _server_url(database_url: str) -> str:
    """A database to connect to for creating and dropping others on the same server: the test
    run's own DATABASE_URL when it names PostgreSQL (reached directly, not through a relay), else
    the server's maintenance database."""
    base = os.environ.get("DATABASE_URL", "")
    return base if base.startswith("postgres") else database_url.rsplit("/", 1)[0] + "/postgres"


def _sqlite_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


# The template databases made so far in this test run: kind -> name (PostgreSQL) or file path.
_templates: dict[str, str] = {}


def _template(kind: str, database_url: str) -> str:
    """A database migrated (and for "demo", seeded) once per test run, dropped at its end."""
    if kind in _templates:
        return _templates[kind]
    folder = Path(tempfile.mkdtemp(prefix=f"enexa-template-{kind}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    env = {
        "DJANGO_SETTINGS_MODULE": live_settings(),
        "DEBUG": "0",
        "ENEXA_VAR_DIR": str(folder / "var"),
        **DEMO_PASSWORDS,
    }
    if database_url.startswith("sqlite"):
        template = str(folder / "template.sqlite3")
        env["DATABASE_URL"] = f"sqlite:///{template}"
    else:
        import psycopg

        template = f"enexa_it_template_{kind}_{uuid.uuid4().hex[:10]}"
        server = _server_url(database_url)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{template}"')
        atexit.register(_drop_database, server, template)
        env["DATABASE_URL"] = server.rsplit("/", 1)[0] + f"/{template}"
    run_manage("migrate", "--noinput", env=env)
    if kind == "demo":
        run_manage("seed_demo", env=env)
    _templates[kind] = template
    return template


def _drop_database(server: str, name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.OperationalError:
        pass  # the server is gone: nothing left to clean


def fill_database(database_url: str, kind: str) -> None:
    """Turn the new, empty database at `database_url` into a migrated one ("migrated"), or one
    with the demo data too ("demo"): a copy of a template made once per test run, since migrate
    and seed_demo cost seconds of Django start-up and work each, a copy a fraction of one."""
    template = _template(kind, database_url)
    if database_url.startswith("sqlite"):
        shutil.copyfile(template, _sqlite_path(database_url))
        return
    import psycopg

    name = _database_name(database_url)
    with psycopg.connect(_server_url(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def access_token(url: str, username: str, password: str) -> str:
    """A JWT access token of `username` from the Enexa at `url`."""
    response = requests.post(
        f"{url}/v1/auth/token", timeout=10, json={"username": username, "password": password}
    )
    response.raise_for_status()
    return str(response.json()["access"])


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

    def healthy() -> bool:
        if not proc.alive():
            raise ProcessExited(proc)  # wait_until gives up at once
        return requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok

    try:
        # Generous: on a busy machine (tests in parallel) starting Django takes a while.
        wait_until(healthy, 90, what="Enexa health")
    except TimeoutError as exc:
        proc.stop()
        raise TimeoutError(f"{exc}; its log:\n{proc.log()[-3000:]}") from None
    return proc


def enexa_worker_args(concurrency: int = 2) -> list[str]:
    """Enexa's Celery worker (deliveries to Amperio, recoveries, periodic work)."""
    return [
        "-m",
        "celery",
        "-A",
        "enexa.celery",
        "worker",
        "-n",
        f"enexa-{uuid.uuid4().hex[:8]}@%h",
        "-P",
        "threads",
        "-c",
        str(concurrency),
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]


class LiveEnexa:
    """A migrated Enexa with the demo data, served by gunicorn on a free port, and its worker
    (on the embedded broker in its var dir) delivering commands."""

    def __init__(self, database_url: str, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_password = DEMO_PASSWORDS["ENEXA_DEMO_ADMIN_PASSWORD"]
        self.env = {
            "DJANGO_SETTINGS_MODULE": live_settings(),
            "DEBUG": "0",
            "DATABASE_URL": database_url,
            "ENEXA_VAR_DIR": str(log_dir / "enexa-var"),
            **DEMO_PASSWORDS,
            **unthrottled_env(),
            **(extra_env or {}),
        }
        fill_database(database_url, "demo")
        self.log_dir = log_dir
        self.proc: Proc | None = None
        self.worker: Proc | None = None
        self.start()

    def start(self) -> None:
        self.worker = Proc(
            f"enexa-worker-{self.port}",
            [sys.executable, *enexa_worker_args()],
            self.log_dir,
            self.env,
        )
        self.proc = serve_enexa(self.port, self.log_dir, self.env)

    def stop(self) -> None:
        stop_all([p for p in (self.worker, self.proc) if p])

    def staff_token(self) -> str:
        return access_token(self.url, "admin", self.admin_password)
