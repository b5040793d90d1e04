"""A command as the gateway keeps it: its statuses, its record, and how the table stores time."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.dispatch import STATUSES, DispatchCommand
from shared.fields import format_timestamp

# The statuses of the wire contract (shared.dispatch), named for the code that sets them.
QUEUED, APPLIED, REJECTED, FAILED, EXPIRED = STATUSES
FINAL = (APPLIED, REJECTED, FAILED, EXPIRED)

READBACK_TOLERANCE = 0.051  # registers hold kW at 0.1 resolution


class RegisterClient(Protocol):
    """What dispatch needs from `amperio.modbus.client.ChargePostClient`."""

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


def now_utc() -> datetime:
    return datetime.now(UTC)


def stored_ts(value: datetime | None) -> str | None:
    """Stored timestamps: fixed width (microseconds always), so SQL compares them as text."""
    if value is None:
        return None
    # isoformat, not strftime: %Y drops the leading zeros of a year before 1000, and such a
    # row would read back without a timestamp.
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def fingerprint(cmd: DispatchCommand) -> str:
    """What makes two deliveries 'the same command' (the timestamp may differ on a resend)."""
    return json.dumps(
        {
            "site_id": cmd.site_id,
            "command": cmd.command,
            "params": cmd.params_dict(),
            "valid_until": stored_ts(cmd.valid_until),
        },
        sort_keys=True,
    )


def same_value(expected: Any, actual: Any) -> bool:
    """Whether a register read back what was written (within the register's resolution)."""
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return abs(float(expected) - float(actual)) <= READBACK_TOLERANCE
    return bool(expected == actual)
