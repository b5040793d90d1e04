"""The gateway's side of the backend link: outcomes kept in a small SQLite outbox until the
broker takes them (queue `amperio.backend`), and the periodic report of limits and health."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from amperio.backend.fleet import Publish
from amperio.sqlite import connect

logger = logging.getLogger(__name__)

BACKEND_QUEUE = "amperio.backend"
RECORD_OUTCOME_TASK = "amperio.backend.record_outcome"
RECORD_REPORT_TASK = "amperio.backend.record_report"


class OutcomeRelay:
    """Outcomes waiting for the broker, oldest first; one is deleted only once published, so
    an outcome produced while the link is down goes out when it returns."""

    def __init__(self, path: Path | str, site_id: str, publish: Publish):
        self.path = Path(path)
        self.site_id = site_id
        self.publish = publish
        self._lock = threading.Lock()  # one sender at a time keeps the order
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY, outcome TEXT)"
            )

    def _conn(self) -> closing[sqlite3.Connection]:
        # FULL: an outcome the table recorded must not vanish with a power cut before it left.
        return closing(connect(self.path, timeout_s=30, synchronous="FULL"))

    def __call__(self, record: Any) -> None:
        """The command table's outcome hook (a `CommandRecord`)."""
        self.add(record.to_dict())

    def add(self, outcome: dict[str, Any]) -> None:
        """Keep an outcome, then try to send what waits."""
        with self._conn() as conn:
            conn.execute("INSERT INTO pending (outcome) VALUES (?)", (json.dumps(outcome),))
        try:
            self.send()
        except Exception:  # noqa: BLE001 - kept; the periodic report sends it later
            logger.warning("outcome of %s kept until the broker is back", outcome["command_id"])

    def depth(self) -> int:
        with self._conn() as conn:
            count: int = conn.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
            return count

    def send(self) -> int:
        """Publish what waits, in order; stops at the first failure (raised). Returns how many
        went out."""
        sent = 0
        with self._lock:
            with self._conn() as conn:
                rows = conn.execute("SELECT id, outcome FROM pending ORDER BY id").fetchall()
            for row_id, outcome in rows:
                self.publish(
                    RECORD_OUTCOME_TASK, [self.site_id, json.loads(outcome)], BACKEND_QUEUE
                )
                with self._conn() as conn:
                    conn.execute("DELETE FROM pending WHERE id = ?", (row_id,))
                sent += 1
        return sent


def site_report(
    publish: Publish,
    site_id: str,
    at: datetime,
    limits: dict[str, Any] | None,
    health: dict[str, Any],
) -> None:
    """The gateway's limits and health of `at`; only the newest counts, so none is kept."""
    from shared.fields import format_timestamp

    publish(RECORD_REPORT_TASK, [site_id, format_timestamp(at), limits, health], BACKEND_QUEUE)
