"""Opening the gateway's SQLite files (outbox, command table, state) one way.

Each is opened by several processes of the gateway at once (workers, beat, the API), so every
connection is in WAL mode (readers never block the writer) and waits for a lock rather than
failing; each store says how durable its commits must be."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any


def connect(
    path: Path | str,
    *,
    timeout_s: float,
    synchronous: str | None = None,
    row_factory: Any = None,
) -> sqlite3.Connection:
    """An autocommit connection (each store begins its own transactions) in WAL mode that
    waits up to `timeout_s` for a lock; `synchronous` as the store needs (SQLite's default
    when None)."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    if row_factory is not None:
        conn.row_factory = row_factory
    conn.execute("PRAGMA journal_mode=WAL")
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


class Connections:
    """One connection per thread and process to one file, opened with `connect` on first use:
    a connection must not be shared between threads, nor used in a child after a fork (Celery
    prefork)."""

    def __init__(self, path: Path | str, **options: Any):
        self.path = path
        self.options = options
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = connect(self.path, **self.options)
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (the next `get` opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
