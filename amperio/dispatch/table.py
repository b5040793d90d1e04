"""The command table: every command received, in SQLite, and what became of it.

The table (WAL, synchronous=FULL) is the source of truth, not the broker: a command is stored
before its task is queued, a task only finishes what the table says is still open, and health
counts what is queued, stuck or failed."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from amperio.dispatch.errors import CommandConflict, CommandError, LimitsUnknown, UnknownCommand
from amperio.dispatch.limits import check_limits
from amperio.dispatch.records import (
    APPLIED,
    EXPIRED,
    FAILED,
    QUEUED,
    REJECTED,
    CommandRecord,
    fingerprint,
    now_utc,
    stored_ts,
)
from amperio.sqlite import Connections
from shared.dispatch import DispatchCommand
from shared.errors import SchemaError
from shared.fields import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)

# Still queued this long after its last try: recovery (every 15 s, after a task is 30 s stale)
# has had several rounds to finish it, so something keeps it from running; health says so.
STUCK_AFTER_S = 120.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL,
    command TEXT NOT NULL,
    params TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    valid_until TEXT,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    registers TEXT NOT NULL DEFAULT '{}',
    received_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    lease_until TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS commands_open ON commands (status, received_at);
CREATE TABLE IF NOT EXISTS leases (
    register TEXT PRIMARY KEY,
    value REAL NOT NULL,
    default_value REAL NOT NULL,
    valid_until TEXT NOT NULL,
    command_id TEXT NOT NULL,
    reversion_timeout_register TEXT
);
"""


class CommandTable:
    """The gateway's command table (and, in the same file, the lease table's schema)."""

    def __init__(self, path: Path | str, on_outcome: Callable[[CommandRecord], None] | None = None):
        """`on_outcome` is told each outcome as it is recorded (the gateway makes it a
        `command` event: amperio.telemetry.events.CommandEvents)."""
        self.path = Path(path)
        self.on_outcome = on_outcome
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # FULL: an accepted command must survive a power cut, it is what Enexa was told.
        self._connections = Connections(
            self.path, timeout_s=10, synchronous="FULL", row_factory=sqlite3.Row
        )
        self.conn().executescript(SCHEMA)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection to the file."""
        return self._connections.get()

    def close(self) -> None:
        self._connections.close()

    def submit(
        self,
        cmd: DispatchCommand | dict[str, Any],
        limits: dict[str, Any] | None,
        now: datetime | None = None,
    ) -> tuple[CommandRecord, bool]:
        """Store a command after checking it against the limits. Returns (record, created).

        The same command_id with the same command returns the first record (created False);
        with a different command it raises CommandConflict. A command that breaks the limits
        is stored as rejected (so its status can be asked for) and raises CommandError; one
        that arrives after its valid_until is stored as expired and never queued.
        Raises SchemaError for malformed input and LimitsUnknown before any configuration.
        """
        now = now or now_utc()
        if not isinstance(cmd, DispatchCommand):
            cmd = DispatchCommand.from_dict(cmd)
        if not cmd.command_id:
            raise SchemaError({"command_id": ["This field is required."]})
        existing = self._row(cmd.command_id)
        if existing is not None:
            return self._replay(existing, fingerprint(cmd)), False
        if not limits:
            raise LimitsUnknown(
                "No configuration is applied on this gateway yet, so the equipment limits "
                "are unknown; try again shortly."
            )
        status, detail, error = QUEUED, "", None
        try:
            check_limits(cmd, limits)
        except CommandError as exc:
            status, detail, error = REJECTED, exc.detail, exc
        if error is None and cmd.valid_until and now >= cmd.valid_until:
            status = EXPIRED
            detail = f"Arrived after its validity ended at {format_timestamp(cmd.valid_until)}."
        raced = self._insert(cmd, status, detail, now)
        if raced is not None:
            return raced, False
        record = self.get(cmd.command_id)
        if status != QUEUED:
            self._outcome(record)
        if error is not None:
            logger.info("command %s for %s rejected: %s", cmd.command_id, cmd.site_id, detail)
            raise error
        logger.info("command %s (%s) for %s %s", cmd.command_id, cmd.command, cmd.site_id, status)
        return record, True

    def _insert(
        self, cmd: DispatchCommand, status: str, detail: str, now: datetime
    ) -> CommandRecord | None:
        """Insert the new row; when the same id raced in from another request, the replay of
        that row instead."""
        assert cmd.command_id
        try:
            self.conn().execute(
                "INSERT INTO commands (command_id, site_id, command, params, fingerprint,"
                " timestamp, valid_until, status, detail, received_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cmd.command_id,
                    cmd.site_id,
                    cmd.command,
                    json.dumps(cmd.params_dict()),
                    fingerprint(cmd),
                    stored_ts(cmd.timestamp),
                    stored_ts(cmd.valid_until),
                    status,
                    detail,
                    stored_ts(now),
                    stored_ts(now) if status != QUEUED else None,
                ),
            )
        except sqlite3.IntegrityError:  # the same id raced in from another request
            row = self._row(cmd.command_id)
            assert row is not None
            return self._replay(row, fingerprint(cmd))
        return None

    def _replay(self, row: sqlite3.Row, fingerprint: str) -> CommandRecord:
        if row["fingerprint"] != fingerprint:
            raise CommandConflict(
                f"command_id {row['command_id']} was already used for a different command.",
                {"command_id": ["Already used for a different command."]},
            )
        record = self._record(row)
        if record.status == REJECTED and record.started_at is None:
            # Refused on arrival: a replay gets the same refusal.
            raise CommandError(record.detail, {})
        return record

    def _row(self, command_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = (
            self.conn()
            .execute("SELECT * FROM commands WHERE command_id = ?", (command_id,))
            .fetchone()
        )
        return row

    @staticmethod
    def _record(row: sqlite3.Row) -> CommandRecord:
        return CommandRecord(
            command_id=row["command_id"],
            site_id=row["site_id"],
            command=row["command"],
            params=json.loads(row["params"]),
            timestamp=parse_timestamp(row["timestamp"]),  # type: ignore[arg-type]
            valid_until=parse_timestamp(row["valid_until"]),
            status=row["status"],
            detail=row["detail"],
            registers=json.loads(row["registers"]),
            received_at=parse_timestamp(row["received_at"]),  # type: ignore[arg-type]
            started_at=parse_timestamp(row["started_at"]),
            finished_at=parse_timestamp(row["finished_at"]),
            lease_until=parse_timestamp(row["lease_until"]),
            attempts=row["attempts"],
        )

    def get(self, command_id: str) -> CommandRecord:
        row = self._row(command_id)
        if row is None:
            raise UnknownCommand(f"No command {command_id}.")
        return self._record(row)

    def open_commands(self) -> list[CommandRecord]:
        rows = self.conn().execute(
            "SELECT * FROM commands WHERE status = ? ORDER BY received_at", (QUEUED,)
        )
        return [self._record(row) for row in rows]

    def open_ids(self) -> list[str]:
        rows = self.conn().execute(
            "SELECT command_id FROM commands WHERE status = ? ORDER BY received_at", (QUEUED,)
        )
        return [row["command_id"] for row in rows]

    def claim(self, command_id: str, now: datetime, stale_after_s: float) -> bool:
        """Mark a queued command as started, unless another run started it recently."""
        stale = stored_ts(now - timedelta(seconds=stale_after_s))
        cursor = self.conn().execute(
            "UPDATE commands SET started_at = ?, attempts = attempts + 1"
            " WHERE command_id = ? AND status = ? AND (started_at IS NULL OR started_at < ?)",
            (stored_ts(now), command_id, QUEUED, stale),
        )
        return cursor.rowcount == 1

    def finish(
        self,
        command_id: str,
        status: str,
        detail: str,
        now: datetime,
        registers: dict[str, Any] | None = None,
        lease_until: datetime | None = None,
    ) -> CommandRecord:
        """Record a command's outcome (and tell `on_outcome`)."""
        self.conn().execute(
            "UPDATE commands SET status = ?, detail = ?, registers = ?, finished_at = ?,"
            " lease_until = ? WHERE command_id = ?",
            (
                status,
                detail,
                json.dumps(registers or {}),
                stored_ts(now),
                stored_ts(lease_until),
                command_id,
            ),
        )
        logger.info("command %s %s %s", command_id, status, detail)
        record = self.get(command_id)
        self._outcome(record)
        return record

    def _outcome(self, record: CommandRecord) -> None:
        if self.on_outcome is not None:
            self.on_outcome(record)

    def fail_unforeseen(self, command_id: str, reason: str, now: datetime) -> CommandRecord | None:
        """Mark a still-queued command failed after an error nobody planned for; None when even
        that fails (the error is logged, the record stays queued and health counts it)."""
        try:
            self.conn().execute(
                "UPDATE commands SET status = ?, detail = ?, finished_at = ?"
                " WHERE command_id = ? AND status = ?",
                (FAILED, reason[:500], stored_ts(now), command_id, QUEUED),
            )
            return self.get(command_id)
        except Exception:  # noqa: BLE001 - the caller goes on with the next command
            logger.exception("command %s could not be marked failed", command_id)
            return None

    def current_mode(self) -> str:
        """The gateway mode from the last applied set_mode (auto until one is)."""
        row = (
            self.conn()
            .execute(
                "SELECT params FROM commands WHERE command = 'set_mode' AND status = ?"
                " ORDER BY finished_at DESC LIMIT 1",
                (APPLIED,),
            )
            .fetchone()
        )
        return json.loads(row["params"])["mode"] if row else "auto"

    def active_schedule(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """The slots of the last applied schedule that are not over yet ([] when none).

        Each slot is `{"start", "end"}` (aware datetimes), `power_kw` and `command_id`; used by
        autonomy while Enexa is unreachable, and by the lease cycle between setpoints."""
        now = now or now_utc()
        row = (
            self.conn()
            .execute(
                "SELECT command_id, params FROM commands WHERE command = 'apply_schedule'"
                " AND status = ? ORDER BY finished_at DESC LIMIT 1",
                (APPLIED,),
            )
            .fetchone()
        )
        if row is None:
            return []
        slots = [
            {
                "start": parse_timestamp(s["start"]),
                "end": parse_timestamp(s["end"]),
                "power_kw": s["power_kw"],
                "command_id": row["command_id"],
            }
            for s in json.loads(row["params"])["slots"]
        ]
        return [slot for slot in slots if slot["end"] > now]

    def status_counts(self) -> dict[str, int]:
        """Commands per status (for /metrics), counted in SQL."""
        rows = self.conn().execute("SELECT status, COUNT(*) FROM commands GROUP BY status")
        return {status: int(n) for status, n in rows.fetchall()}

    def health(self, now: datetime | None = None) -> dict[str, Any]:
        """For `GET /v1/health`: queued commands, those stuck (still queued `STUCK_AFTER_S`
        after their last try, so recovery cannot finish them), failed ones and the last failure.

        Counted in SQL, never by reading the records: a record that cannot be read must not
        take health down with it. The last failure names the command and when; its reason is
        in `GET /v1/dispatch/{id}`, behind the service token (health is open)."""
        now = now or now_utc()
        conn = self.conn()
        counts = conn.execute(
            "SELECT COUNT(*) FILTER (WHERE status = :queued) AS queued,"
            " COUNT(*) FILTER (WHERE status = :queued"
            "  AND COALESCE(started_at, received_at) < :stuck) AS stuck,"
            " COUNT(*) FILTER (WHERE status = :failed) AS failed FROM commands",
            {
                "queued": QUEUED,
                "failed": FAILED,
                "stuck": stored_ts(now - timedelta(seconds=STUCK_AFTER_S)),
            },
        ).fetchone()
        last = conn.execute(
            "SELECT command_id, finished_at FROM commands WHERE status = ?"
            " ORDER BY finished_at DESC LIMIT 1",
            (FAILED,),
        ).fetchone()
        last_failure = None
        if last is not None:
            at = parse_timestamp(last["finished_at"])
            last_failure = {
                "command_id": last["command_id"],
                "at": format_timestamp(at) if at else None,
            }
        return {
            "queued": counts["queued"],
            "stuck": counts["stuck"],
            "failed": counts["failed"],
            "last_failure": last_failure,
        }
