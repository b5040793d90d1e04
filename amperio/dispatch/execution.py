"""Running one queued command: check it again, write its registers, read back, record.

Validity is checked at the register write, so a late task expires instead of applying late;
an error nobody planned for marks the command failed: a command never stays queued because
its task crashed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from amperio.dispatch.errors import CommandError, UnknownCommand
from amperio.dispatch.leases import LeaseTable, reversion_timeout
from amperio.dispatch.limits import check_limits, validity_end
from amperio.dispatch.plan import Plan, plan_command, undo, with_reversion
from amperio.dispatch.records import (
    APPLIED,
    EXPIRED,
    FAILED,
    FINAL,
    REJECTED,
    CommandRecord,
    RegisterClient,
    now_utc,
    same_value,
)
from amperio.dispatch.table import CommandTable
from amperio.enexa_link.configsync import operating_limits
from amperio.modbus.errors import ModbusError, RegisterRangeError
from shared.dispatch import DispatchCommand, SetMode, parse_params
from shared.errors import SchemaError
from shared.fields import format_timestamp

logger = logging.getLogger(__name__)

# A queued command without a result after this long lost its task (e.g. a killed worker).
DEFAULT_STALE_AFTER_S = 30.0

Clock = Callable[[], datetime]


class _Outcome(Exception):
    """A command ends here without being applied: its status and why (`at`: when, where that
    is not the moment it is recorded)."""

    def __init__(self, status: str, detail: str, at: datetime | None = None):
        super().__init__(detail)
        self.status, self.detail, self.at = status, detail, at


def execute(
    commands: CommandTable,
    leases: LeaseTable,
    command_id: str,
    client: RegisterClient,
    config: dict[str, Any] | None,
    now: datetime | Clock | None = None,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> CommandRecord:
    """Check, write, read back and record one command; a finished command is left as is.

    `now` is the clock at the register write: a datetime (tests), a callable, or None for
    the wall clock."""
    clock: Clock = (lambda: now) if isinstance(now, datetime) else (now or now_utc)
    try:
        record = commands.get(command_id)
        if record.status in FINAL or not commands.claim(command_id, clock(), stale_after_s):
            return commands.get(command_id)
        try:
            return _apply(commands, leases, record, client, config, clock)
        except _Outcome as out:
            return commands.finish(command_id, out.status, out.detail, out.at or clock())
    except UnknownCommand:
        raise  # no record to mark
    except Exception as exc:  # noqa: BLE001 - a command must end with a status, not a crash
        logger.exception("command %s could not be executed; marking it failed", command_id)
        failed = commands.fail_unforeseen(
            command_id, f"It could not be executed: {type(exc).__name__}: {exc}", clock()
        )
        if failed is None:
            raise  # not even recorded: the task fails loudly, health counts it as stuck
        return failed


def _apply(
    commands: CommandTable,
    leases: LeaseTable,
    record: CommandRecord,
    client: RegisterClient,
    config: dict[str, Any] | None,
    clock: Clock,
) -> CommandRecord:
    """The claimed command from its checks to its applied record; raises _Outcome where it
    ends otherwise."""
    cmd = _checked(commands, record, config)
    try:
        lease_until = validity_end(cmd.timestamp, cmd.valid_until, config)
        plan = plan_command(cmd, client, config or {}, clock())
    except CommandError as exc:
        raise _Outcome(REJECTED, exc.detail) from None
    except ModbusError as exc:
        raise _Outcome(FAILED, f"Reading the unit failed: {exc}") from None
    at_write = clock()
    if at_write >= lease_until:
        raise _Outcome(
            EXPIRED,
            f"Validity ended at {format_timestamp(lease_until)} before the register write "
            f"at {format_timestamp(at_write)}; not applied late.",
            at_write,
        )
    if plan.lease_until is not None:
        lease_until = plan.lease_until  # a schedule slot holds until its end
    written = _write(client, plan, reversion_timeout(config, lease_until, at_write))
    if isinstance(cmd.params, SetMode) and cmd.params.mode == "safe":
        leases.drop_all()
    if plan.leases:
        leases.start(record.command_id, plan, lease_until)
    return commands.finish(
        record.command_id,
        APPLIED,
        _detail(plan, written),
        clock(),
        written,
        lease_until if plan.leases else None,
    )


def _checked(
    commands: CommandTable, record: CommandRecord, config: dict[str, Any] | None
) -> DispatchCommand:
    """The stored command, checked again: its schema, the limits now (they may have changed
    since it arrived) and the gateway's mode."""
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
        raise _Outcome(REJECTED, str(exc)) from None
    limits = operating_limits(config or {})
    if not limits:
        raise _Outcome(FAILED, "No configuration applied; limits unknown.")
    try:
        check_limits(cmd, limits)
    except CommandError as exc:
        raise _Outcome(REJECTED, exc.detail) from None
    if not isinstance(cmd.params, SetMode) and commands.current_mode() == "safe":
        raise _Outcome(REJECTED, "The gateway is in safe mode; set_mode first.")
    return cmd


def _write(client: RegisterClient, plan: Plan, timeout_s: int) -> dict[str, Any]:
    """Write the plan (after each battery unit's reversion) and return what the unit read back."""
    try:
        # One call: every value is range-checked before the first is sent, then read back.
        writes = dict(with_reversion(plan, timeout_s))
        return client.write_many(writes) if writes else {}
    except RegisterRangeError as exc:
        raise _Outcome(REJECTED, f"Nothing written: {exc}") from None
    except ModbusError as exc:
        undo(client, plan)
        raise _Outcome(FAILED, f"Register write failed: {exc}") from None


def _detail(plan: Plan, written: dict[str, Any]) -> str:
    """The plan's detail, and the values the unit clamped (read back other than written)."""
    clamped = [
        f"{name} wrote {value:g} read back {written[name]}"
        for name, value in plan.writes
        if not same_value(value, written.get(name))
    ]
    if not clamped:
        return plan.detail
    return (plan.detail + " " if plan.detail else "") + "Unit clamped: " + "; ".join(clamped) + "."
