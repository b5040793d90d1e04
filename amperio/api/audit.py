"""The audit log of Amperio's API: one row per call in the state directory's audit.sqlite3,
secrets masked; pruned past AMPERIO_AUDIT_RETENTION_DAYS. Imports no Django (the command line
prunes it)."""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from amperio.sqlite import Connections

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
# Names of query parameters that hold secrets.
SECRET_NAME = re.compile(r"key|secret|password|passwd|token|authorization|signature", re.I)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    caller TEXT NOT NULL,
    source_ip TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    command_id TEXT,
    duration_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS audit_created_at ON audit (created_at);
CREATE INDEX IF NOT EXISTS audit_command_id ON audit (command_id);
"""


def _stamp(moment: datetime) -> str:
    # One fixed width (microseconds always), so stored times compare correctly as text.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditCall:
    """One call as the middleware saw it; `caller` is a token name or `anonymous`."""

    caller: str
    source_ip: str | None
    method: str
    path: str
    query: str
    status: int
    command_id: str | None
    duration_ms: int


def mask(text: str, secrets: tuple[str, ...], limit: int) -> str:
    """`text` without any configured secret in it, storable as UTF-8, at most `limit` long."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def mask_query(query: str, secrets: tuple[str, ...]) -> str:
    """The query string with the values of secret-looking parameters replaced."""
    pairs = parse_qsl(query, keep_blank_values=True)
    masked = urlencode([(k, REDACTED if SECRET_NAME.search(k) else v) for k, v in pairs])
    return mask(masked, secrets, 1000)


class AuditLog:
    """The audit table; each process and thread has its own connection."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # NORMAL: in WAL mode a power cut can lose the last rows, never corrupt the file; an
        # audit row is not worth an fsync on every call.
        self._connections = Connections(
            self.path, timeout_s=5, synchronous="NORMAL", row_factory=sqlite3.Row
        )
        self._connections.get().executescript(_SCHEMA)

    def record(
        self, call: AuditCall, secrets: tuple[str, ...], now: datetime | None = None
    ) -> None:
        """Write one row, secrets masked."""
        row = (
            _stamp(now or datetime.now(UTC)),
            mask(call.caller, secrets, 200),
            call.source_ip,
            mask(call.method, secrets, 10),
            mask(call.path, secrets, 500),
            mask_query(call.query, secrets),
            call.status,
            mask(call.command_id, secrets, 200) if call.command_id else None,
            call.duration_ms,
        )
        self._connections.get().execute(
            "INSERT INTO audit (created_at, caller, source_ip, method, path, query, status,"
            " command_id, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )

    def entries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest rows first."""
        rows = self._connections.get().execute(
            "SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [dict(row) for row in rows]

    def prune(self, older_than_days: int, now: datetime | None = None) -> int:
        """Delete rows older than `older_than_days` (0: all); returns how many went."""
        if older_than_days < 0:
            raise ValueError("The retention is a number of days, 0 or more.")
        try:
            cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
        except OverflowError:
            return 0  # a retention reaching before year 1 keeps everything
        cursor = self._connections.get().execute(
            "DELETE FROM audit WHERE created_at < ?", (_stamp(cutoff),)
        )
        logger.info("pruned %s audit rows older than %s days", cursor.rowcount, older_than_days)
        return cursor.rowcount

    def close(self) -> None:
        self._connections.close()
