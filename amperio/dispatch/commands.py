"""Dispatch commands on the gateway: the command table, limit checks, register writes and leases.

The command table (SQLite, WAL, synchronous=FULL) is the source of truth, not the broker: a
command is stored before its task is queued, a task only finishes what the table says is still
open, and a task lost with a killed worker is found again by `recover_lost`.

A setpoint is a lease: it holds until the command's `valid_until` (or the configured
`setpoint_validity_s`), `reassert_leases` re-writes and reads it back every cycle (hardware
reverts setpoints on its own timers and a reconnect can lose them), and when the lease runs out
the unit goes back to its default behaviour.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from amperio.enexa_link.configsync import operating_limits
from amperio.modbus.errors import ModbusError, RegisterRangeError
from amperio.sqlite import Connections
from shared.dispatch import (
    ApplySchedule,
    DispatchCommand,
    ScheduleSlot,
    SetBatteryPower,
    SetChargerPowerLimit,
    SetGridLimit,
    SetMode,
    parse_params,
)
from shared.errors import SchemaError
from shared.fields import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)

QUEUED, APPLIED, REJECTED, FAILED, EXPIRED = "queued", "applied", "rejected", "failed", "expired"
FINAL = (APPLIED, REJECTED, FAILED, EXPIRED)

BATTERY_UNITS = ("BAT1", "BAT2")
DEFAULT_SETPOINT_VALIDITY_S = 900.0
# How long the hardware keeps a setpoint without a fresh write; several reassert cycles, so a
# missed cycle is harmless but a dead gateway hands control back to the unit quickly.
DEFAULT_REVERSION_TIMEOUT_S = 60
# A queued command without a result after this long lost its task (e.g. a killed worker).
DEFAULT_STALE_AFTER_S = 30.0
# Still queued this long after its last try: recovery (every 15 s, after DEFAULT_STALE_AFTER_S)
# has had several rounds to finish it, so something keeps it from running; health says so.
STUCK_AFTER_S = 120.0
READBACK_TOLERANCE = 0.051  # registers hold kW at 0.1 resolution


class CommandError(Exception):
    """A command refused by the gateway; `errors` maps field -> messages."""

    def __init__(self, detail: str, errors: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}


class CommandConflict(CommandError):
    """The command_id was already used for a different command (the API answers 422)."""


class LimitsUnknown(CommandError):
    """No configuration is applied yet, so the limits to check against are unknown (503)."""


class UnknownCommand(CommandError):
    """No command with that id (404)."""


class RegisterClient(Protocol):
    """What the store needs from `amperio.modbus.client.ChargePostClient`."""

    def write_many(self, values: dict[str, Any], read_back: bool = True) -> dict[str, Any]: ...

    def read(self, names: Iterable[str]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CommandRecord:
    """One row of the command table: the command as received and what became of it."""

    command_id: str
    site_id: str
    command: str
    params: dict[str, Any]
    timestamp: datetime
    valid_until: datetime | None
    status: str
    detail: str
    registers: dict[str, Any]
    received_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_until: datetime | None
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        """The wire shape of `GET /v1/dispatch/{command_id}`."""

        def ts(value: datetime | None) -> str | None:
            return format_timestamp(value) if value else None

        return {
            "command_id": self.command_id,
            "site_id": self.site_id,
            "command": self.command,
            "params": self.params,
            "timestamp": ts(self.timestamp),
            "valid_until": ts(self.valid_until),
            "status": self.status,
            "detail": self.detail,
            "registers": self.registers,
            "received_at": ts(self.received_at),
            "finished_at": ts(self.finished_at),
            "lease_until": ts(self.lease_until),
        }


@dataclass
class _Plan:
    """The register writes of one command, and the leases they start."""

    writes: list[tuple[str, float]] = field(default_factory=list)
    # register -> value the unit returns to when the lease ends
    leases: dict[str, float] = field(default_factory=dict)
    detail: str = ""
    # when the leases end, where that is not the command's validity (a schedule slot's end)
    lease_until: datetime | None = None


_SCHEMA = """
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


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None) -> str | None:
    """Stored timestamps: fixed width (microseconds always), so SQL compares them as text."""
    if value is None:
        return None
    # isoformat, not strftime: %Y drops the leading zeros of a year before 1000, and such a
    # row would read back without a timestamp.
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def _fingerprint(cmd: DispatchCommand) -> str:
    """What makes two deliveries 'the same command' (the timestamp may differ on a resend)."""
    return json.dumps(
        {
            "site_id": cmd.site_id,
            "command": cmd.command,
            "params": cmd.params_dict(),
            "valid_until": _ts(cmd.valid_until),
        },
        sort_keys=True,
    )


def setpoint_validity_s(config: dict[str, Any] | None) -> float:
    settings = (config or {}).get("settings") or {}
    value = settings.get("setpoint_validity_s")
    return (
        float(value)
        if isinstance(value, (int, float)) and value > 0
        else (DEFAULT_SETPOINT_VALIDITY_S)
    )


def validity_end(
    timestamp: datetime, valid_until: datetime | None, config: dict[str, Any] | None
) -> datetime:
    """When a command's setpoint stops holding: its valid_until, else its timestamp plus the
    configured validity.

    Raises CommandError when that moment is past the end of the calendar (a timestamp in the
    last minutes of year 9999). Refused rather than capped at datetime.max: a capped lease would
    hold the setpoint until something replaced it, the opposite of a lease, and no real
    sender's clock reads year 9999, so the command is refused with the reason and writes
    nothing."""
    if valid_until is not None:
        return valid_until
    validity_s = setpoint_validity_s(config)
    try:
        return timestamp + timedelta(seconds=validity_s)
    except OverflowError:
        raise CommandError(
            f"Its timestamp {format_timestamp(timestamp)} plus the setpoint validity of "
            f"{validity_s:g} s is past the end of the calendar; no lease can end then.",
            {"timestamp": ["Too far in the future for its validity to end."]},
        ) from None


def reversion_timeout_s(config: dict[str, Any] | None) -> int:
    settings = (config or {}).get("settings") or {}
    value = settings.get("setpoint_reversion_timeout_s")
    return (
        int(value)
        if isinstance(value, (int, float)) and value >= 1
        else (DEFAULT_REVERSION_TIMEOUT_S)
    )


def check_limits(cmd: DispatchCommand, limits: dict[str, Any]) -> None:
    """Refuse a command that breaks the equipment limits, naming the limit in the message."""
    errors: dict[str, list[str]] = {}
    params = cmd.params
    battery = limits.get("battery") or {}

    def check_battery_power(path: str, power_kw: float, unit_id: str | None) -> None:
        scope, source = "the battery", battery
        if unit_id is not None:
            units = battery.get("units") or {}
            if unit_id not in units:
                known = ", ".join(sorted(units)) or "none"
                errors.setdefault("params.unit_id", []).append(
                    f"Unknown battery unit {unit_id}; this site has: {known}."
                )
                return
            scope, source = f"unit {unit_id}", units[unit_id]
        if power_kw > 0:
            limit = source.get("max_discharge_kw")
            if limit is not None and power_kw > limit:
                errors.setdefault(path, []).append(
                    f"{power_kw:g} kW discharge exceeds {scope}'s discharge limit of {limit:g} kW."
                )
        elif power_kw < 0:
            limit = source.get("max_charge_kw")
            if limit is not None and -power_kw > limit:
                errors.setdefault(path, []).append(
                    f"{-power_kw:g} kW charge exceeds {scope}'s charge limit of {limit:g} kW."
                )

    if isinstance(params, SetBatteryPower):
        check_battery_power("params.power_kw", params.power_kw, params.unit_id)
    elif isinstance(params, ApplySchedule):
        for i, slot in enumerate(params.slots):
            check_battery_power(f"params.slots.{i}.power_kw", slot.power_kw, None)
    elif isinstance(params, SetChargerPowerLimit):
        chargers = limits.get("chargers") or {}
        if params.charger_id not in chargers:
            known = ", ".join(sorted(chargers)) or "none"
            errors["params.charger_id"] = [
                f"Unknown charger {params.charger_id}; this site has: {known}."
            ]
        else:
            limit = chargers[params.charger_id].get("max_power_kw")
            if limit is not None and params.limit_kw > limit:
                errors["params.limit_kw"] = [
                    f"{params.limit_kw:g} kW exceeds charger {params.charger_id}'s maximum "
                    f"power of {limit:g} kW."
                ]
    elif isinstance(params, SetGridLimit):
        limit = (limits.get("grid") or {}).get("limit_kw")
        if limit is not None and params.limit_kw > limit:
            errors["params.limit_kw"] = [
                f"{params.limit_kw:g} kW exceeds the site's grid connection limit of {limit:g} kW."
            ]
    if errors:
        raise CommandError(
            "The command breaks the equipment limits: "
            + " ".join(m for messages in errors.values() for m in messages),
            errors,
        )


class CommandStore:
    """The gateway's command table and setpoint leases in one SQLite file."""

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
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def close(self) -> None:
        self._connections.close()

    # -- the command table ------------------------------------------------------------------

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
        now = now or _now()
        if not isinstance(cmd, DispatchCommand):
            cmd = DispatchCommand.from_dict(cmd)
        if not cmd.command_id:
            raise SchemaError({"command_id": ["This field is required."]})
        fingerprint = _fingerprint(cmd)
        existing = self._row(cmd.command_id)
        if existing is not None:
            return self._replay(existing, fingerprint), False
        status, detail, error = QUEUED, "", None
        if not limits:
            raise LimitsUnknown(
                "No configuration is applied on this gateway yet, so the equipment limits "
                "are unknown; try again shortly."
            )
        try:
            check_limits(cmd, limits)
        except CommandError as exc:
            status, detail, error = REJECTED, exc.detail, exc
        if error is None and cmd.valid_until and now >= cmd.valid_until:
            status = EXPIRED
            detail = f"Arrived after its validity ended at {format_timestamp(cmd.valid_until)}."
        conn = self._conn()
        try:
            conn.execute(
                "INSERT INTO commands (command_id, site_id, command, params, fingerprint,"
                " timestamp, valid_until, status, detail, received_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cmd.command_id,
                    cmd.site_id,
                    cmd.command,
                    json.dumps(cmd.params_dict()),
                    fingerprint,
                    _ts(cmd.timestamp),
                    _ts(cmd.valid_until),
                    status,
                    detail,
                    _ts(now),
                    _ts(now) if status != QUEUED else None,
                ),
            )
        except sqlite3.IntegrityError:  # the same id raced in from another request
            row = self._row(cmd.command_id)
            assert row is not None
            return self._replay(row, fingerprint), False
        record = self.get(cmd.command_id)
        if status != QUEUED:
            self._outcome(record)
        if error is not None:
            logger.info("command %s for %s rejected: %s", cmd.command_id, cmd.site_id, detail)
            raise error
        logger.info("command %s (%s) for %s %s", cmd.command_id, cmd.command, cmd.site_id, status)
        return record, True

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
            self._conn()
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
        rows = self._conn().execute(
            "SELECT * FROM commands WHERE status = ? ORDER BY received_at", (QUEUED,)
        )
        return [self._record(row) for row in rows]

    def _claim(self, command_id: str, now: datetime, stale_after_s: float) -> bool:
        """Mark a queued command as started, unless another run started it recently."""
        stale = _ts(now - timedelta(seconds=stale_after_s))
        cursor = self._conn().execute(
            "UPDATE commands SET started_at = ?, attempts = attempts + 1"
            " WHERE command_id = ? AND status = ? AND (started_at IS NULL OR started_at < ?)",
            (_ts(now), command_id, QUEUED, stale),
        )
        return cursor.rowcount == 1

    def _finish(
        self,
        command_id: str,
        status: str,
        detail: str,
        now: datetime,
        registers: dict[str, Any] | None = None,
        lease_until: datetime | None = None,
    ) -> CommandRecord:
        self._conn().execute(
            "UPDATE commands SET status = ?, detail = ?, registers = ?, finished_at = ?,"
            " lease_until = ? WHERE command_id = ?",
            (
                status,
                detail,
                json.dumps(registers or {}),
                _ts(now),
                _ts(lease_until),
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

    def _fail_unforeseen(self, command_id: str, reason: str, now: datetime) -> CommandRecord | None:
        """Mark a still-queued command failed after an error nobody planned for; None when even
        that fails (the error is logged, the record stays queued and health counts it)."""
        try:
            self._conn().execute(
                "UPDATE commands SET status = ?, detail = ?, finished_at = ?"
                " WHERE command_id = ? AND status = ?",
                (FAILED, reason[:500], _ts(now), command_id, QUEUED),
            )
            return self.get(command_id)
        except Exception:  # noqa: BLE001 - the caller goes on with the next command
            logger.exception("command %s could not be marked failed", command_id)
            return None

    # -- execution --------------------------------------------------------------------------

    def execute(
        self,
        command_id: str,
        client: RegisterClient,
        config: dict[str, Any] | None,
        now: datetime | Callable[[], datetime] | None = None,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
    ) -> CommandRecord:
        """Check, write, read back and record one command; a finished command is left as is.

        `now` is the clock at the register write: a datetime (tests), a callable, or None for
        the wall clock. Validity is checked at that moment, so a late task expires instead of
        applying late. An error nobody planned for marks the command failed with the reason
        (and logs it): a command never stays queued because its task crashed.
        """
        clock: Callable[[], datetime] = (
            (lambda: now) if isinstance(now, datetime) else (now or _now)
        )
        try:
            return self._execute(command_id, client, config, clock, stale_after_s)
        except UnknownCommand:
            raise  # no record to mark
        except Exception as exc:  # noqa: BLE001 - a command must end with a status, not a crash
            logger.exception("command %s could not be executed; marking it failed", command_id)
            failed = self._fail_unforeseen(
                command_id, f"It could not be executed: {type(exc).__name__}: {exc}", clock()
            )
            if failed is None:
                raise  # not even recorded: the task fails loudly, health counts it as stuck
            return failed

    def _execute(
        self,
        command_id: str,
        client: RegisterClient,
        config: dict[str, Any] | None,
        clock: Callable[[], datetime],
        stale_after_s: float,
    ) -> CommandRecord:
        record = self.get(command_id)
        if record.status in FINAL or not self._claim(command_id, clock(), stale_after_s):
            return self.get(command_id)
        try:
            cmd = DispatchCommand(
                site_id=record.site_id,
                command=record.command,
                params=parse_params(record.command, record.params),
                timestamp=record.timestamp,
                command_id=record.command_id,
                valid_until=record.valid_until,
            )
        except SchemaError as exc:
            return self._finish(command_id, REJECTED, str(exc), clock())
        limits = operating_limits(config or {})
        if not limits:
            return self._finish(
                command_id, FAILED, "No configuration applied; limits unknown.", clock()
            )
        try:
            check_limits(cmd, limits)  # the limits may have changed since the command arrived
        except CommandError as exc:
            return self._finish(command_id, REJECTED, exc.detail, clock())
        if not isinstance(cmd.params, SetMode) and self.current_mode() == "safe":
            return self._finish(
                command_id, REJECTED, "The gateway is in safe mode; set_mode first.", clock()
            )
        try:
            lease_until = validity_end(cmd.timestamp, cmd.valid_until, config)
            plan = self._plan(cmd, client, config or {}, clock())
        except CommandError as exc:
            return self._finish(command_id, REJECTED, exc.detail, clock())
        except ModbusError as exc:
            return self._finish(command_id, FAILED, f"Reading the unit failed: {exc}", clock())
        at_write = clock()
        if at_write >= lease_until:
            return self._finish(
                command_id,
                EXPIRED,
                f"Validity ended at {format_timestamp(lease_until)} before the register write "
                f"at {format_timestamp(at_write)}; not applied late.",
                at_write,
            )
        if plan.lease_until is not None:
            lease_until = plan.lease_until  # a schedule slot holds until its end
        timeout_s = self._reversion_timeout(config, lease_until, at_write)
        try:
            # One call: every value is range-checked before the first is sent, then read back.
            writes = dict(self._with_reversion(plan, timeout_s))
            written = client.write_many(writes) if writes else {}
        except RegisterRangeError as exc:
            return self._finish(command_id, REJECTED, f"Nothing written: {exc}", clock())
        except ModbusError as exc:
            self._undo(client, plan)
            return self._finish(command_id, FAILED, f"Register write failed: {exc}", clock())
        detail = plan.detail
        clamped = [
            f"{name} wrote {value:g} read back {written[name]}"
            for name, value in plan.writes
            if not _same(value, written.get(name))
        ]
        if clamped:
            detail = (detail + " " if detail else "") + "Unit clamped: " + "; ".join(clamped) + "."
        if isinstance(cmd.params, SetMode) and cmd.params.mode == "safe":
            self._conn().execute("DELETE FROM leases")
        if plan.leases:
            self._start_leases(cmd.command_id or command_id, plan, lease_until)
        return self._finish(
            command_id,
            APPLIED,
            detail,
            clock(),
            written,
            lease_until if plan.leases else None,
        )

    @staticmethod
    def _reversion_timeout(
        config: dict[str, Any] | None, lease_until: datetime, now: datetime
    ) -> int:
        # Never longer than the lease: a dead gateway's setpoint must not outlive its validity.
        remaining = math.ceil((lease_until - now).total_seconds())
        return max(1, min(reversion_timeout_s(config), remaining))

    @staticmethod
    def _with_reversion(plan: _Plan, timeout_s: int) -> list[tuple[str, float]]:
        """Arm each battery unit's reversion (to 0 after `timeout_s`) before its setpoint."""
        out: list[tuple[str, float]] = []
        for name, value in plan.writes:
            unit = _battery_unit_of(name)
            if unit:
                out.append((f"{unit}_setpoint_reversion_kw", 0.0))
                out.append((f"{unit}_setpoint_reversion_timeout_s", timeout_s))
            out.append((name, value))
        return out

    @staticmethod
    def _undo(client: RegisterClient, plan: _Plan) -> None:
        """After a write failed part way, put the setpoints back to their defaults if we can."""
        if not plan.leases:
            return
        try:
            client.write_many(dict(plan.leases))
        except ModbusError:  # the link is down: the hardware reversion timer still applies
            logger.warning("could not undo %s after a failed command", ", ".join(plan.leases))

    def _plan(
        self, cmd: DispatchCommand, client: RegisterClient, config: dict[str, Any], now: datetime
    ) -> _Plan:
        params = cmd.params
        limits = config.get("limits") or {}
        if isinstance(params, SetBatteryPower):
            shares = (
                {params.unit_id: params.power_kw}
                if params.unit_id
                else split_battery_power(params.power_kw, client, limits)
            )
            plan = _Plan()
            for unit, share in shares.items():
                name = f"{unit.lower()}_power_setpoint_kw"
                plan.writes.append((name, share))
                plan.leases[name] = 0.0
            return plan
        if isinstance(params, SetChargerPowerLimit):
            name = f"{params.charger_id.lower()}_power_limit_kw"
            default = (
                (limits.get("chargers") or {})
                .get(params.charger_id, {})
                .get("max_power_kw", params.limit_kw)
            )
            return _Plan(writes=[(name, params.limit_kw)], leases={name: float(default)})
        if isinstance(params, SetGridLimit):
            default = configured_grid_limit_kw(config)
            default = params.limit_kw if default is None else default
            return _Plan(
                writes=[("site_grid_limit_kw", params.limit_kw)],
                leases={"site_grid_limit_kw": float(default)},
            )
        if isinstance(params, SetMode):
            # The unit's operating_mode register is read-only (it reports the watchdog's safe
            # state), so the mode is the gateway's: auto follows schedules, manual only
            # dispatches, safe stops the batteries and drops every lease.
            plan = _Plan(detail=f"Gateway mode set to {params.mode}.")
            if params.mode == "safe":
                plan.writes = [(f"{u.lower()}_power_setpoint_kw", 0.0) for u in BATTERY_UNITS]
            return plan
        if isinstance(params, ApplySchedule):
            slot = _slot_at(params, now)
            plan = _Plan(
                detail=f"Schedule of {len(params.slots)} slots stored for autonomous operation."
            )
            if slot is not None:
                plan.lease_until = slot.end
                current = split_battery_power(slot.power_kw, client, limits)
                for unit, share in current.items():
                    name = f"{unit.lower()}_power_setpoint_kw"
                    plan.writes.append((name, share))
                    plan.leases[name] = 0.0
            return plan
        raise CommandError(f"Unsupported command {cmd.command}.")

    # -- leases -----------------------------------------------------------------------------

    def _start_leases(self, command_id: str, plan: _Plan, valid_until: datetime) -> None:
        values = dict(plan.writes)
        conn = self._conn()
        with conn:
            for name, default in plan.leases.items():
                unit = _battery_unit_of(name)
                conn.execute(
                    "INSERT INTO leases (register, value, default_value, valid_until, command_id,"
                    " reversion_timeout_register) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(register) DO UPDATE SET value = excluded.value,"
                    " default_value = excluded.default_value, valid_until = excluded.valid_until,"
                    " command_id = excluded.command_id,"
                    " reversion_timeout_register = excluded.reversion_timeout_register",
                    (
                        name,
                        values[name],
                        default,
                        _ts(valid_until),
                        command_id,
                        f"{unit}_setpoint_reversion_timeout_s" if unit else None,
                    ),
                )

    def _lease_rows(self) -> list[sqlite3.Row]:
        return self._conn().execute("SELECT * FROM leases ORDER BY register").fetchall()

    def leases(self) -> list[dict[str, Any]]:
        return [
            {
                "register": row["register"],
                "value": row["value"],
                "default_value": row["default_value"],
                "valid_until": row["valid_until"],
                "command_id": row["command_id"],
            }
            for row in self._lease_rows()
        ]

    def reassert_leases(
        self,
        client: RegisterClient,
        now: datetime | None = None,
        config: dict[str, Any] | None = None,
        *,
        snapshot: dict[str, Any] | None = None,
        held_elsewhere: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """Re-write and read back every live setpoint; return ended ones to their default.

        `snapshot` is what the unit answered this cycle (saves reading the registers again).
        The registers in `held_elsewhere` are written by someone else this cycle (autonomy's
        battery setpoints while Enexa is away, the charger limits it caps, never above a
        lease): their leases, live or ended, write nothing (nor a reversion timeout), so the
        unit never sees two values in one cycle; an ended one is still released.

        Returns one entry per register touched: `action` is `reasserted`, `corrected` (the unit
        had lost or reverted it), `released` (lease over, default written unless held elsewhere)
        or `failed`.
        """
        now = now or _now()
        rows = self._lease_rows()
        if self._lease_from_schedule(client, now, config, rows):
            rows = self._lease_rows()
        if not rows:
            return []
        ids = {row["register"]: row["command_id"] for row in rows}
        ended = {
            row["register"]: self._default_for(row["register"], row["default_value"], config)
            for row in rows
            if now >= parse_timestamp(row["valid_until"])  # type: ignore[operator]
        }
        writes: dict[str, Any] = {k: v for k, v in ended.items() if k not in held_elsewhere}
        live = [row for row in rows if row["register"] not in ended]
        live = [row for row in live if row["register"] not in held_elsewhere]
        for row in live:
            if row["reversion_timeout_register"]:
                valid_until = parse_timestamp(row["valid_until"])
                assert valid_until is not None
                timeout_s = self._reversion_timeout(config, valid_until, now)
                writes[row["reversion_timeout_register"]] = timeout_s
            writes[row["register"]] = row["value"]
        try:
            names = [row["register"] for row in live]
            if snapshot is not None:
                before = {name: snapshot.get(name) for name in names}
            else:
                before = client.read(names) if names else {}
            readback = client.write_many(writes)
        except ModbusError as exc:  # the link is down; the next cycle tries again
            logger.warning("leases not re-asserted: %s", exc)
            return [
                {"register": name, "action": "failed", "error": str(exc), "command_id": cid}
                for name, cid in ids.items()
            ]
        conn = self._conn()
        with conn:
            conn.executemany("DELETE FROM leases WHERE register = ?", [(n,) for n in ended])
        results: list[dict[str, Any]] = []
        for name, default in ended.items():
            results.append(
                {
                    "register": name,
                    "action": "released",
                    "value": default,
                    "readback": readback.get(name),
                    "command_id": ids[name],
                }
            )
        for row in live:
            name = row["register"]
            results.append(
                {
                    "register": name,
                    "action": "reasserted"
                    if _same(row["value"], before.get(name))
                    else "corrected",
                    "value": row["value"],
                    "before": before.get(name),
                    "readback": readback.get(name),
                    "command_id": ids[name],
                }
            )
        for entry in results:
            if entry["action"] != "reasserted":
                logger.info(
                    "lease %s on %s (%s)", entry["action"], entry["register"], entry["command_id"]
                )
        return results

    @staticmethod
    def _default_for(name: str, stored: float, config: dict[str, Any] | None) -> float:
        """The unit's default for a register, from the current config where it names one."""
        limits = (config or {}).get("limits") or {}
        if name == "site_grid_limit_kw":
            value = configured_grid_limit_kw(config or {})
            return value if value is not None else stored
        if name.endswith("_power_limit_kw") and name.startswith("chg"):
            charger = name.split("_", 1)[0].upper()
            value = (limits.get("chargers") or {}).get(charger, {}).get("max_power_kw")
            return float(value) if value is not None else stored
        return stored

    def _lease_from_schedule(
        self,
        client: RegisterClient,
        now: datetime,
        config: dict[str, Any] | None,
        rows: list[sqlite3.Row],
    ) -> bool:
        """Where no explicit battery setpoint holds (among the lease `rows`), the active
        schedule's slot becomes one; True when it did."""
        held = {
            row["register"]
            for row in rows
            if parse_timestamp(row["valid_until"]) > now  # type: ignore[operator]
        }
        if any(name.startswith("bat") for name in held) or self.current_mode() != "auto":
            return False
        slot = next((s for s in self.active_schedule(now) if s["start"] <= now), None)
        if slot is None:
            return False
        command_id = slot["command_id"]
        limits = (config or {}).get("limits") or {}
        try:
            shares = split_battery_power(slot["power_kw"], client, limits)
        except ModbusError as exc:  # the link is down; the next cycle tries again
            logger.warning("schedule slot not started: %s", exc)
            return False
        plan = _Plan()
        for unit, share in shares.items():
            name = f"{unit.lower()}_power_setpoint_kw"
            plan.writes.append((name, share))
            plan.leases[name] = 0.0
        self._start_leases(command_id, plan, slot["end"])
        return True

    def current_mode(self) -> str:
        """The gateway mode from the last applied set_mode (auto until one is)."""
        row = (
            self._conn()
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
        now = now or _now()
        row = (
            self._conn()
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

    # -- lost tasks -------------------------------------------------------------------------

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
        now = now or _now()
        stale = now - timedelta(seconds=stale_after_s)
        out: list[CommandRecord] = []
        for command_id in self._open_ids():
            try:
                record = self._recover(command_id, now, stale, client, config, stale_after_s)
            except Exception as exc:  # noqa: BLE001 - one bad record must not block the rest
                logger.exception("recovery of command %s failed; marking it failed", command_id)
                reason = f"Recovery could not finish it: {type(exc).__name__}: {exc}"
                record = self._fail_unforeseen(command_id, reason, now)
            if record is not None:
                out.append(record)
        return out

    def _open_ids(self) -> list[str]:
        rows = self._conn().execute(
            "SELECT command_id FROM commands WHERE status = ? ORDER BY received_at", (QUEUED,)
        )
        return [row["command_id"] for row in rows]

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
            return self._finish(command_id, REJECTED, exc.detail, now)
        if now >= end:
            return self._finish(
                command_id,
                EXPIRED,
                "Its task was lost and the validity ended before it could be re-run.",
                now,
            )
        if client is not None:
            return self.execute(command_id, client, config, now, stale_after_s)
        return record

    def health(self, now: datetime | None = None) -> dict[str, Any]:
        """For `GET /v1/health`: queued commands, those stuck (still queued `STUCK_AFTER_S`
        after their last try, so recovery cannot finish them), failed ones and the last failure.

        Counted in SQL, never by reading the records: a record that cannot be read must not
        take health down with it. The last failure names the command and when; its reason is
        in `GET /v1/dispatch/{id}`, behind the service token (health is open)."""
        now = now or _now()
        conn = self._conn()
        counts = conn.execute(
            "SELECT COUNT(*) FILTER (WHERE status = :queued) AS queued,"
            " COUNT(*) FILTER (WHERE status = :queued"
            "  AND COALESCE(started_at, received_at) < :stuck) AS stuck,"
            " COUNT(*) FILTER (WHERE status = :failed) AS failed FROM commands",
            {
                "queued": QUEUED,
                "failed": FAILED,
                "stuck": _ts(now - timedelta(seconds=STUCK_AFTER_S)),
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


def split_battery_power(
    power_kw: float, client: RegisterClient, limits: dict[str, Any]
) -> dict[str, float]:
    """Split a site battery setpoint over the units in proportion to what each allows now.

    The units' allowed charge/discharge power comes from the hardware; where a unit reports
    none (undefined), its configured maximum stands in."""
    direction = "discharge" if power_kw >= 0 else "charge"
    configured = (limits.get("battery") or {}).get("units") or {}
    names = {unit: f"{unit.lower()}_allowed_{direction}_kw" for unit in BATTERY_UNITS}
    now_allowed = client.read(list(names.values()))
    weights: dict[str, float] = {}
    for unit in BATTERY_UNITS:
        allowed = now_allowed.get(names[unit])
        if allowed is None:
            allowed = configured.get(unit, {}).get(f"max_{direction}_kw", 0.0)
        weights[unit] = max(0.0, float(allowed or 0.0))
    total = sum(weights.values())
    if total <= 0:
        return {unit: round(power_kw / len(BATTERY_UNITS), 1) for unit in BATTERY_UNITS}
    shares = {unit: round(power_kw * w / total, 1) for unit, w in weights.items()}
    # Rounding must not change the total the site asked for.
    first = BATTERY_UNITS[0]
    shares[first] = round(shares[first] + power_kw - sum(shares.values()), 1)
    return shares


def _slot_at(schedule: ApplySchedule, now: datetime) -> ScheduleSlot | None:
    return next((s for s in schedule.slots if s.start <= now < s.end), None)


def _battery_unit_of(register: str) -> str | None:
    if register.endswith("_power_setpoint_kw") and register.startswith("bat"):
        return register.split("_", 1)[0]
    return None


def battery_setpoint_registers(names: Iterable[str]) -> set[str]:
    """The battery units' power setpoint registers among `names` (a lease on one also arms its
    unit's reversion timeout)."""
    return {name for name in names if _battery_unit_of(name)}


def configured_grid_limit_kw(config: dict[str, Any]) -> float | None:
    """The grid limit the unit holds when no dispatch does: the configured one (which Enexa
    keeps within the connection limit), else the connection limit itself."""
    for section in ("settings", "limits"):
        value = ((config.get(section) or {}).get("grid") or {}).get("limit_kw")
        if value is not None:
            return float(value)
    return None


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return abs(float(expected) - float(actual)) <= READBACK_TOLERANCE
    return bool(expected == actual)


# -- entry points for the gateway's tasks (this process's handles from amperio.gateway) -------


def _gateway() -> tuple[Any, RegisterClient, dict[str, Any]]:
    """This process's gateway, its ChargePost client (connection kept) and the applied config."""
    from amperio.gateway import get_gateway

    gw = get_gateway()
    config = gw.config()
    return gw, gw.chargeposts(config)[0], config


def execute(command_id: str, store: CommandStore | None = None) -> CommandRecord:
    """Run one queued command against this gateway's ChargePost (the `apply_command` task)."""
    gw, client, config = _gateway()
    store = store or gw.commands()
    record = store.execute(command_id, client, config)
    if record.command == "set_mode" and record.status == APPLIED:
        gw.state.set("mode", store.current_mode())
    return record


def recover_lost(store: CommandStore | None = None) -> list[CommandRecord]:
    """Finish or expire this gateway's commands whose task was lost."""
    gw, client, config = _gateway()
    return (store or gw.commands()).recover_lost(client=client, config=config)
