"""The gateway's `command`, `firmware` and `log` events, queued in the outbox like readings.

Each goes to Enexa's `POST /v1/events` through the outbox and its flusher, so an outage delays
them but loses none: command outcomes (applied, rejected, failed, expired) where the command
table records them, firmware steps (download, verify, install, result) as the update runs, and
the gateway's own warnings and errors while Enexa is unreachable (the outage log)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from amperio.dispatch.records import APPLIED
from amperio.state import StateKey
from shared.events import new_event

log = logging.getLogger(__name__)

# At most this many `log` events per outage: a long outage repeats the same few warnings every
# cycle, and events are never thinned in the outbox.
MAX_LOG_EVENTS_PER_OUTAGE = 200
_MESSAGE_MAX = 2000  # shared.events.Event.message

OutboxOpener = Callable[[], Any]  # returns an amperio.telemetry.outbox.Outbox


def _queue(outbox: OutboxOpener, event: dict[str, Any]) -> None:
    """Queue an event; a failure is logged, never raised: the step it reports stands."""
    try:
        outbox().add_event(event)
    except Exception:
        log.exception("%s event not queued: %s", event.get("kind"), event.get("message"))


# -- command outcomes --------------------------------------------------------------------------


def command_event(site_id: str, record: Any, now: datetime | None = None) -> dict[str, Any]:
    """The `command` event of a finished command (an `amperio.dispatch.records.CommandRecord`)."""
    data: dict[str, Any] = {
        "command_id": record.command_id,
        "command": record.command,
        "status": record.status,
        "detail": record.detail,
    }
    if record.registers:
        data["registers"] = record.registers
    message = f"Command {record.command_id} ({record.command}) {record.status}"
    if record.detail:
        message += f": {record.detail}"
    return new_event(
        record.site_id or site_id,
        "command",
        message[:_MESSAGE_MAX],
        record.finished_at or now or datetime.now(UTC),
        "info" if record.status == APPLIED else "warning",
        data,
    )


class CommandEvents:
    """The command table's outcome hook: each outcome becomes a `command` event."""

    def __init__(self, outbox: OutboxOpener, site_id: str):
        self.outbox = outbox
        self.site_id = site_id

    def __call__(self, record: Any) -> None:
        _queue(self.outbox, command_event(self.site_id, record))


# -- firmware steps ----------------------------------------------------------------------------

FirmwareStep = Callable[[str, str, str, dict[str, Any]], None]


def firmware_steps(outbox: OutboxOpener, site_id: str) -> FirmwareStep:
    """`step(name, status, message, data)` for `amperio.enexa_link.firmware.check_and_update`:
    each step (download, verify, install, result) becomes a `firmware` event."""

    def step(name: str, status: str, message: str, data: dict[str, Any]) -> None:
        severity = "warning" if status == "failed" else "info"
        event = new_event(
            site_id,
            "firmware",
            message[:_MESSAGE_MAX],
            datetime.now(UTC),
            severity,
            {"step": name, "status": status, **data},
        )
        _queue(outbox, event)

    return step


# -- the outage log ----------------------------------------------------------------------------


class OutageLog(logging.Handler):
    """Warnings and errors of the gateway's own log while Enexa is unreachable (the state's
    `enexa_unreachable_since` is set) become `log` events, so Enexa learns what happened during
    the outage once the outbox drains. Each kind of line (logger and message template) is kept
    once per outage, since the cycles repeat the same warning every few seconds, and at most
    `max_lines` of them, then one line saying the rest were not kept. What was kept lives in
    the gateway state, shared by its processes."""

    def __init__(
        self,
        state: Any,
        outbox: OutboxOpener,
        site_id: str,
        max_lines: int = MAX_LOG_EVENTS_PER_OUTAGE,
    ):
        super().__init__(logging.WARNING)
        self.state = state
        self.outbox = outbox
        self.site_id = site_id
        self.max_lines = max_lines
        self._inside = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        # Queueing may log itself (a locked outbox): that line must not come back here.
        if getattr(self._inside, "active", False):
            return
        self._inside.active = True
        try:
            self._keep(record)
        except Exception:  # noqa: BLE001, S110 - logging must never fail the code that logs
            pass
        finally:
            self._inside.active = False

    def _keep(self, record: logging.LogRecord) -> None:
        since = self.state.get(StateKey.ENEXA_UNREACHABLE_SINCE)
        if not since:
            return
        kept = self.state.get(StateKey.OUTAGE_LOG) or {}
        seen: list[str] = list(kept.get("seen") or []) if kept.get("since") == since else []
        line = hashlib.sha256(f"{record.name}\0{record.msg}".encode()).hexdigest()[:16]
        count = len(seen)
        if count > self.max_lines or line in seen:
            return
        self.state.set(StateKey.OUTAGE_LOG, {"since": since, "seen": [*seen, line]})
        data = {"logger": record.name, "level": record.levelname, "outage_since": since}
        if count == self.max_lines:
            message = (
                f"More than {self.max_lines} log lines during this outage; the rest are not kept."
            )
            severity = "warning"
        else:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                message += f" ({type(error).__name__}: {error})"
            severity = "critical" if record.levelno >= logging.CRITICAL else "warning"
        event = new_event(
            self.site_id,
            "log",
            message[:_MESSAGE_MAX],
            datetime.fromtimestamp(record.created, UTC),
            severity,
            data,
        )
        self.outbox().add_event(event)


def install_outage_log(state: Any, outbox: OutboxOpener, site_id: str) -> OutageLog:
    """Put an OutageLog on the `amperio` logger in place of any earlier one (one per process:
    `amperio.gateway.get_gateway` calls this when it makes the process's handles)."""
    logger = logging.getLogger("amperio")
    for handler in [h for h in logger.handlers if isinstance(h, OutageLog)]:
        logger.removeHandler(handler)
    handler = OutageLog(state, outbox, site_id)
    logger.addHandler(handler)
    return handler
