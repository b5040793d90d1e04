"""The gateway's live state (link up, last read, last beat, ...) shared between its processes.

A small key-value table in SQLite, so the worker, the watchdog worker and the API process each
see what the others recorded (the health endpoint reads it)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from amperio.sqlite import Connections


class GatewayState:
    """Key -> JSON value, durable and readable from any process of the gateway."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connections = Connections(self.path, timeout_s=10)
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return self._connections.get()

    def set(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, values: dict[str, Any]) -> None:
        conn = self._connect()
        with conn:
            conn.executemany(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, json.dumps(v, default=str)) for k, v in values.items()],
            )

    def get(self, key: str, default: Any = None) -> Any:
        row = self._connect().execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def snapshot(self) -> dict[str, Any]:
        rows = self._connect().execute("SELECT key, value FROM state").fetchall()
        return {key: json.loads(value) for key, value in rows}
