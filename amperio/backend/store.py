"""The backend's store, shared by every API replica: the sites it serves and their commands.

PostgreSQL (psycopg) when `AMPERIO_DATABASE_URL` is `postgres://...`; a SQLite file when it is
`sqlite:///path` (a demo or a single host). One SQL text serves both (JSON kept as text,
timestamps as fixed-width UTC text that compares as it sorts); only the placeholder differs."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from amperio.dispatch.records import stored_ts

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS backend_sites ("
    " site_id TEXT PRIMARY KEY, limits TEXT, health TEXT, last_report_at TEXT)",
    "CREATE TABLE IF NOT EXISTS backend_commands ("
    " command_id TEXT PRIMARY KEY, site_id TEXT NOT NULL, payload TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',"
    " registers TEXT NOT NULL DEFAULT '{}', received_at TEXT NOT NULL, finished_at TEXT,"
    " lease_until TEXT, updated_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS backend_commands_site ON backend_commands (site_id, status)",
]
COMMAND_COLUMNS = (
    "command_id", "site_id", "payload", "fingerprint", "status", "detail", "registers",
    "received_at", "finished_at", "lease_until",
)  # fmt: skip
POSTGRES_SCHEMES = ("postgres://", "postgresql://")
SQLITE_SCHEME = "sqlite:///"


@dataclass(frozen=True)
class SiteRow:
    """What the backend knows of a site: its limits and health as its gateway last reported."""

    site_id: str
    limits: dict[str, Any] | None
    health: dict[str, Any] | None
    last_report_at: str | None


class BackendStore:
    """The two tables behind one interface. On PostgreSQL each thread keeps one connection
    (a new one per call forked a server process per query: most of a dispatch's time at tens
    of sites); replicas still share nothing but the database. SQLite opens one per call."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith(POSTGRES_SCHEMES):
            self.postgres = True
            self._local = threading.local()
        elif url.startswith(SQLITE_SCHEME):
            self.postgres = False
            self.path = Path("/" + url[len(SQLITE_SCHEME) :].lstrip("/"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            raise ValueError("AMPERIO_DATABASE_URL must start with postgres:// or sqlite:///.")
        with self._cursor() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor in one transaction, committed on success."""
        if self.postgres:
            pg = self._connection()
            with pg.transaction(), pg.cursor() as cur:
                yield cur
            return
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            with conn:
                yield conn.cursor()
        finally:
            conn.close()

    def _connection(self) -> Any:
        """This thread's PostgreSQL connection, opened again when the last one broke (a
        restarted server, a dropped link): one call fails, the next reconnects."""
        import psycopg  # only a backend on PostgreSQL needs the driver loaded

        pg = getattr(self._local, "pg", None)
        if pg is None or pg.closed or pg.broken:
            # Autocommit: each call's transaction is the explicit one in _cursor().
            pg = self._local.pg = psycopg.connect(self.url, autocommit=True)
        return pg

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.postgres else text

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._cursor() as cur:
            cur.execute(self._sql(sql), params)
            row: tuple[Any, ...] | None = cur.fetchone()
            return row

    def _run(self, sql: str, params: tuple[Any, ...]) -> int:
        with self._cursor() as cur:
            cur.execute(self._sql(sql), params)
            count: int = cur.rowcount
            return count

    # -- sites ---------------------------------------------------------------------------------

    def sites(self) -> list[SiteRow]:
        with self._cursor() as cur:
            cur.execute("SELECT site_id, limits, health, last_report_at FROM backend_sites")
            return [_site(row) for row in cur.fetchall()]

    def site(self, site_id: str) -> SiteRow | None:
        row = self._one(
            "SELECT site_id, limits, health, last_report_at FROM backend_sites WHERE site_id = ?",
            (site_id,),
        )
        return _site(row) if row else None

    def record_report(
        self,
        site_id: str,
        at: datetime,
        limits: dict[str, Any] | None,
        health: dict[str, Any] | None,
    ) -> None:
        """A gateway's report: its site becomes known, with its limits and health of `at`.
        An older report arriving late (a backlog) never overwrites a newer one."""
        self._run(
            "INSERT INTO backend_sites (site_id, limits, health, last_report_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (site_id) DO UPDATE SET"
            " limits = excluded.limits, health = excluded.health,"
            " last_report_at = excluded.last_report_at"
            " WHERE backend_sites.last_report_at IS NULL"
            " OR backend_sites.last_report_at <= excluded.last_report_at",
            (site_id, _json(limits), _json(health), stored_ts(at)),
        )

    # -- commands ------------------------------------------------------------------------------

    def add_command(
        self,
        command_id: str,
        site_id: str,
        payload: dict[str, Any],
        fingerprint: str,
        status: str,
        detail: str,
        now: datetime,
    ) -> bool:
        """Insert a new command; False when the id is already stored (a replay or a race)."""
        at = stored_ts(now)
        finished = None if status == "queued" else at
        return (
            self._run(
                "INSERT INTO backend_commands (command_id, site_id, payload, fingerprint, status,"
                " detail, received_at, finished_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (command_id) DO NOTHING",
                (command_id, site_id, json.dumps(payload), fingerprint, status, detail, at)
                + (finished, at),
            )
            == 1
        )

    def command(self, command_id: str) -> dict[str, Any] | None:
        """The stored command as columns (payload and registers parsed), or None."""
        row = self._one(
            f"SELECT {', '.join(COMMAND_COLUMNS)} FROM backend_commands WHERE command_id = ?",  # noqa: S608 - constant names
            (command_id,),
        )
        if row is None:
            return None
        found = dict(zip(COMMAND_COLUMNS, row, strict=True))
        found["payload"] = json.loads(found["payload"])
        found["registers"] = json.loads(found["registers"] or "{}")
        return found

    def record_outcome(self, site_id: str, outcome: dict[str, Any], now: datetime) -> bool:
        """A gateway's outcome for one of its site's commands (`CommandRecord.to_dict`).
        A final status is never replaced by another; another site's command is left alone."""
        return (
            self._run(
                "UPDATE backend_commands SET status = ?, detail = ?, registers = ?,"
                " finished_at = ?, lease_until = ?, updated_at = ?"
                " WHERE command_id = ? AND site_id = ? AND status = 'queued'",
                (
                    str(outcome["status"]),
                    str(outcome.get("detail") or ""),
                    json.dumps(outcome.get("registers") or {}),
                    outcome.get("finished_at"),
                    outcome.get("lease_until"),
                    stored_ts(now),
                    str(outcome["command_id"]),
                    site_id,
                ),
            )
            == 1
        )

    def command_counts(self) -> dict[tuple[str, str], int]:
        """(site, status) -> commands, for /metrics."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT site_id, status, COUNT(*) FROM backend_commands GROUP BY site_id, status"
            )
            return {(site, status): int(n) for site, status, n in cur.fetchall()}

    def unconfirmed(self, before: datetime) -> dict[str, int]:
        """Per site: commands still queued that were received before `before` (no outcome
        came back: a gateway away, or a message lost)."""
        with self._cursor() as cur:
            cur.execute(
                self._sql(
                    "SELECT site_id, COUNT(*) FROM backend_commands"
                    " WHERE status = 'queued' AND received_at < ? GROUP BY site_id"
                ),
                (stored_ts(before),),
            )
            return {site_id: int(count) for site_id, count in cur.fetchall()}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _site(row: tuple[Any, ...]) -> SiteRow:
    site_id, limits, health, last = row
    return SiteRow(
        site_id,
        json.loads(limits) if limits else None,
        json.loads(health) if health else None,
        last,
    )
