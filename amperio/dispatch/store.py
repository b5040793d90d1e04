"""The gateway's command store: the command table, its leases and execution, in one SQLite file.

A command is stored before its task is queued (amperio.dispatch.table), run by its task
(amperio.dispatch.execution), and its setpoint held as a lease (amperio.dispatch.leases); a
task lost with a killed worker is found again by `recover_lost`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from amperio.dispatch import execution
from amperio.dispatch.errors import CommandError
from amperio.dispatch.leases import LeaseTable
from amperio.dispatch.limits import validity_end
from amperio.dispatch.records import (
    EXPIRED,
    QUEUED,
    REJECTED,
    CommandRecord,
    RegisterClient,
    now_utc,
)
from amperio.dispatch.table import CommandTable

logger = logging.getLogger(__name__)

DEFAULT_STALE_AFTER_S = execution.DEFAULT_STALE_AFTER_S


class CommandStore(CommandTable):
    """The command table with its setpoint leases, and the running of its commands."""

    def __init__(self, path: Path | str, on_outcome: Callable[[CommandRecord], None] | None = None):
        super().__init__(path, on_outcome)
        self.lease_table = LeaseTable(self)
        # The lease table's own methods, named as the gateway's cycles call them.
        self.leases = self.lease_table.leases
        self.reassert_leases = self.lease_table.reassert

    def execute(
        self,
        command_id: str,
        client: RegisterClient,
        config: dict[str, Any] | None,
        now: datetime | Callable[[], datetime] | None = None,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
    ) -> CommandRecord:
        """Run one queued command (see amperio.dispatch.execution.execute)."""
        return execution.execute(
            self, self.lease_table, command_id, client, config, now, stale_after_s
        )

    def recover_lost(
        self,
        now: datetime | None = None,
        *,
        client: RegisterClient | None = None,
        config: dict[str, Any] | None = None,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
    ) -> list[CommandRecord]:
        """Find queued commands whose task is lost (no result after `stale_after_s`).

        Those past their validity are expired. The rest are executed now when a `client` is
        given; otherwise they are returned still queued for the caller to enqueue again.
        One record that cannot be handled is marked failed and logged; the others go on."""
        now = now or now_utc()
        stale = now - timedelta(seconds=stale_after_s)
        out: list[CommandRecord] = []
        for command_id in self.open_ids():
            try:
                record = self._recover(command_id, now, stale, client, config, stale_after_s)
            except Exception as exc:  # noqa: BLE001 - one bad record must not block the rest
                logger.exception("recovery of command %s failed; marking it failed", command_id)
                reason = f"Recovery could not finish it: {type(exc).__name__}: {exc}"
                record = self.fail_unforeseen(command_id, reason, now)
            if record is not None:
                out.append(record)
        return out

    def _recover(
        self,
        command_id: str,
        now: datetime,
        stale: datetime,
        client: RegisterClient | None,
        config: dict[str, Any] | None,
        stale_after_s: float,
    ) -> CommandRecord | None:
        """One queued command in `recover_lost`: None while its task may still be running."""
        record = self.get(command_id)
        last_try = record.started_at or record.received_at
        if record.status != QUEUED or last_try > stale:
            return None
        try:
            end = validity_end(record.timestamp, record.valid_until, config)
        except CommandError as exc:
            return self.finish(command_id, REJECTED, exc.detail, now)
        if now >= end:
            return self.finish(
                command_id,
                EXPIRED,
                "Its task was lost and the validity ended before it could be re-run.",
                now,
            )
        if client is not None:
            return self.execute(command_id, client, config, now, stale_after_s)
        return record
