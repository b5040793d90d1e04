"""The gateway's durable outbox: readings and events wait here until Enexa has confirmed them.

SQLite in WAL mode with `synchronous=FULL` on every connection, so a reading reported as added
survives a `kill -9` or a power cut. Any process of the gateway (worker, API) may open it.
Readings are bounded by count and age; over the bound the oldest stretch is thinned (every other
intermediate reading dropped, its first and last kept, as OCPP does) rather than refusing new
data. Events are never thinned. What was thinned or dropped is counted for a report."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amperio.sqlite import Connections
from shared.fields import format_timestamp

KINDS = ("reading", "event")
# Over the bound, thin down to this fraction of it, so thinning runs now and then on a long
# stretch (halving its resolution) instead of eating the second-oldest reading on every add.
THIN_TO_FRACTION = 0.9
# An item handed out by next_batch is not handed out again for this long unless acked,
# rejected or released: a flusher killed mid-send leaves it to the next one after the lease.
DEFAULT_LEASE_S = 60.0
_SQL_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    leased_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_kind_key ON outbox (kind, key);
CREATE INDEX IF NOT EXISTS outbox_kind_enqueued ON outbox (kind, enqueued_at);
CREATE TABLE IF NOT EXISTS dead_letter (
    key INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    errors TEXT NOT NULL,
    dead_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _chunks(keys: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(keys), _SQL_CHUNK):
        yield keys[start : start + _SQL_CHUNK]


@dataclass(frozen=True)
class OutboxItem:
    """One queued reading or event: its outbox key, wire payload and history."""

    key: int
    payload: dict[str, Any]
    enqueued_at: datetime
    attempts: int


class Outbox:
    """Readings and events waiting for Enexa's confirmation, durable across crashes."""

    def __init__(
        self,
        path: Path | str,
        max_readings: int = 100_000,
        max_age_s: float = 7 * 86400,
        max_attempts: int = 5,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], datetime] = _utc_now,
    ):
        self.path = Path(path)
        self.max_readings = max_readings
        self.max_age_s = max_age_s
        self.max_attempts = max_attempts
        self.lease_s = lease_s
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # FULL: the WAL is fsynced at every commit, so a committed add survives power loss.
        self._connections = Connections(self.path, timeout_s=30, synchronous="FULL")
        self._connect().executescript(_SCHEMA)

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        return self._connections.get()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front: no deadlock between two processes that
        # both read and then want to write.
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self._connections.close()

    # -- adding ------------------------------------------------------------------------------

    def add_reading(self, reading: dict[str, Any]) -> None:
        """Queue one reading (wire form, with its `message_id`); durable once this returns."""
        self.add_readings([reading])

    def add_readings(self, readings: Iterable[dict[str, Any]]) -> None:
        """Queue readings in one transaction; the bound is applied in the same transaction."""
        now = _ts(self.clock())
        rows = [("reading", json.dumps(r, separators=(",", ":")), now) for r in readings]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO outbox (kind, payload, enqueued_at) VALUES (?, ?, ?)", rows
            )
            # A running total, never reset: "read" versus "stored in Enexa" after an outage.
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('readings_added', ?) ON CONFLICT(name) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)",
                (str(len(rows)),),
            )
            self._apply_bound(conn, now)

    def add_event(self, event: dict[str, Any]) -> None:
        """Queue one event (wire form, with its `event_id`); events are never thinned."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO outbox (kind, payload, enqueued_at) VALUES ('event', ?, ?)",
                (json.dumps(event, separators=(",", ":")), _ts(self.clock())),
            )

    def _apply_bound(self, conn: sqlite3.Connection, now: float) -> None:
        expired = conn.execute(
            "DELETE FROM outbox WHERE kind = 'reading' AND enqueued_at < ?",
            (now - self.max_age_s,),
        ).rowcount
        self._count(conn, "dropped_expired", expired)
        (count,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'reading'").fetchone()
        if count <= self.max_readings:
            return
        target = max(1, int(self.max_readings * THIN_TO_FRACTION))
        thinned = 0
        site_id = None
        while count > target:
            excess = count - target
            # Dropping every other intermediate reading of a stretch of 2n+1 removes n of them.
            stretch = [
                key
                for (key,) in conn.execute(
                    "SELECT key FROM outbox WHERE kind = 'reading' ORDER BY key LIMIT ?",
                    (2 * excess + 1,),
                )
            ]
            drop = stretch[1:-1:2]
            if not drop:
                break
            if site_id is None:
                row = conn.execute("SELECT payload FROM outbox WHERE key = ?", (drop[0],))
                site_id = json.loads(row.fetchone()[0]).get("site_id")
            for chunk in _chunks(drop):
                conn.execute(
                    f"DELETE FROM outbox WHERE key IN ({','.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                )
            count -= len(drop)
            thinned += len(drop)
        self._count(conn, "thinned", thinned)
        if site_id:
            conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('report_site_id', ?)",
                (site_id,),
            )

    def _count(self, conn: sqlite3.Connection, name: str, n: int) -> None:
        if n <= 0:
            return
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('report_since', ?)",
            (format_timestamp(self.clock()),),
        )

    # -- taking out --------------------------------------------------------------------------

    def next_batch(
        self, kind: str, limit: int, live_since: datetime | None = None
    ) -> list[OutboxItem]:
        """Up to `limit` items not leased to another sender: live ones (enqueued at or after
        `live_since`) first, then the backlog, each oldest first. They are leased until acked,
        rejected or released (or the lease runs out)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        now = _ts(self.clock())
        select = (
            "SELECT key, payload, enqueued_at, attempts FROM outbox "
            "WHERE kind = ? AND leased_until <= ? {where} ORDER BY key LIMIT ?"
        )
        with self._write() as conn:
            rows: list[tuple[int, str, float, int]] = []
            if live_since is not None:
                since = _ts(live_since)
                rows += conn.execute(
                    select.format(where="AND enqueued_at >= ?"), (kind, now, since, limit)
                ).fetchall()
                if len(rows) < limit:
                    rows += conn.execute(
                        select.format(where="AND enqueued_at < ?"),
                        (kind, now, since, limit - len(rows)),
                    ).fetchall()
            else:
                rows = conn.execute(select.format(where=""), (kind, now, limit)).fetchall()
            self._set_lease([row[0] for row in rows], now + self.lease_s, conn)
        return [
            OutboxItem(key=key, payload=json.loads(payload), enqueued_at=_dt(at), attempts=n)
            for key, payload, at, n in rows
        ]

    def _set_lease(self, keys: Sequence[int], until: float, conn: sqlite3.Connection) -> None:
        for chunk in _chunks(list(keys)):
            conn.execute(
                f"UPDATE outbox SET leased_until = ? WHERE key IN ({','.join('?' * len(chunk))})",  # noqa: S608
                (until, *chunk),
            )

    def ack(self, keys: Iterable[int]) -> None:
        """Enexa confirmed these (stored or already had them): they leave the outbox."""
        keys = list(keys)
        with self._write() as conn:
            for chunk in _chunks(keys):
                conn.execute(
                    f"DELETE FROM outbox WHERE key IN ({','.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                )

    def release(self, keys: Iterable[int]) -> None:
        """A transient failure (Enexa unreachable, 5xx): the items stay, ready to be sent again."""
        with self._write() as conn:
            self._set_lease(list(keys), 0, conn)

    def reject(self, key: int, errors: Any) -> bool:
        """Enexa refused the item as invalid. After `max_attempts` refusals it moves to the
        dead-letter table with the errors, so it no longer holds up the queue. True if it did."""
        now = _ts(self.clock())
        with self._write() as conn:
            row = conn.execute(
                "SELECT kind, payload, enqueued_at, attempts FROM outbox WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return False
            kind, payload, enqueued_at, attempts = row
            attempts += 1
            if attempts < self.max_attempts:
                conn.execute(
                    "UPDATE outbox SET attempts = ?, leased_until = 0 WHERE key = ?",
                    (attempts, key),
                )
                return False
            conn.execute(
                "INSERT OR REPLACE INTO dead_letter "
                "(key, kind, payload, enqueued_at, attempts, errors, dead_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, kind, payload, enqueued_at, attempts, json.dumps(errors, default=str), now),
            )
            conn.execute("DELETE FROM outbox WHERE key = ?", (key,))
            return True

    # -- looking in --------------------------------------------------------------------------

    def depth(self) -> dict[str, Any]:
        """Counts of what waits (readings, events), what is dead, and the oldest wait."""
        conn = self._connect()
        counts = dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
        (dead,) = conn.execute("SELECT COUNT(*) FROM dead_letter").fetchone()
        (oldest,) = conn.execute("SELECT MIN(enqueued_at) FROM outbox").fetchone()
        added = self.get_meta("readings_added")
        return {
            "readings": counts.get("reading", 0),
            "events": counts.get("event", 0),
            "readings_added": int(added) if added else 0,
            "dead_letter": dead,
            "oldest_at": format_timestamp(_dt(oldest)) if oldest is not None else None,
        }

    def backlog_count(self, kind: str, before: datetime) -> int:
        """How many items of `kind` were enqueued before `before` and still wait."""
        (count,) = (
            self._connect()
            .execute(
                "SELECT COUNT(*) FROM outbox WHERE kind = ? AND enqueued_at < ?",
                (kind, _ts(before)),
            )
            .fetchone()
        )
        return int(count)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The items Enexa kept refusing, with its last errors (for operators)."""
        rows = (
            self._connect()
            .execute(
                "SELECT key, kind, payload, attempts, errors, dead_at FROM dead_letter ORDER BY key"
            )
            .fetchall()
        )
        return [
            {
                "key": key,
                "kind": kind,
                "payload": json.loads(payload),
                "attempts": attempts,
                "errors": json.loads(errors),
                "dead_at": format_timestamp(_dt(dead_at)),
            }
            for key, kind, payload, attempts, errors, dead_at in rows
        ]

    def take_thinning_report(self) -> dict[str, Any] | None:
        """Readings thinned or dropped for age since the last report; returned once, else None."""
        with self._write() as conn:
            counts = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            meta = dict(
                conn.execute(
                    "SELECT name, value FROM meta WHERE name IN ('report_since', 'report_site_id')"
                ).fetchall()
            )
            conn.execute("DELETE FROM counters")
            conn.execute("DELETE FROM meta WHERE name = 'report_since'")
        if not any(counts.values()):
            return None
        return {
            "thinned": counts.get("thinned", 0),
            "dropped_expired": counts.get("dropped_expired", 0),
            "since": meta.get("report_since"),
            "until": format_timestamp(self.clock()),
            "site_id": meta.get("report_site_id"),
            "max_readings": self.max_readings,
            "max_age_s": self.max_age_s,
        }

    # -- small shared state of the flusher (outage times), kept with the data it concerns -----

    def get_meta(self, name: str) -> str | None:
        row = self._connect().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str | None) -> None:
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE name = ?", (name,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)
                )
