"""Dispatch commands Enexa sends to Amperio (`POST /v1/dispatch`) and their status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import SchemaError
from .fields import Reader, drop_none, format_timestamp, parse
from .telemetry import MAX_ABS_POWER_KW

MODES = ("auto", "manual", "safe")
STATUSES = ("queued", "applied", "rejected", "failed", "expired")
MAX_SLOTS = 96 * 7  # a week of 15-minute slots
# No setpoint beyond what a reading may carry (a larger one is a unit mistake or hostile).
POWER_RANGE = {"minimum": -MAX_ABS_POWER_KW, "maximum": MAX_ABS_POWER_KW}


@dataclass(frozen=True)
class SetBatteryPower:
    """Battery power for the site (split over the units) or one unit; + discharge, - charge."""

    power_kw: float
    unit_id: str | None = None

    @classmethod
    def read(cls, r: Reader) -> SetBatteryPower:
        return cls(
            power_kw=r.number("power_kw", required=True, **POWER_RANGE) or 0.0,
            unit_id=r.string("unit_id", max_length=32),
        )


@dataclass(frozen=True)
class SetChargerPowerLimit:
    charger_id: str
    limit_kw: float

    @classmethod
    def read(cls, r: Reader) -> SetChargerPowerLimit:
        return cls(
            charger_id=r.string("charger_id", required=True, max_length=32) or "",
            limit_kw=r.number("limit_kw", required=True, minimum=0, maximum=MAX_ABS_POWER_KW)
            or 0.0,
        )


@dataclass(frozen=True)
class SetGridLimit:
    limit_kw: float

    @classmethod
    def read(cls, r: Reader) -> SetGridLimit:
        return cls(
            limit_kw=r.number("limit_kw", required=True, minimum=0, maximum=MAX_ABS_POWER_KW) or 0.0
        )


@dataclass(frozen=True)
class SetMode:
    mode: str

    @classmethod
    def read(cls, r: Reader) -> SetMode:
        return cls(mode=r.string("mode", required=True, choices=MODES) or "")


@dataclass(frozen=True)
class ScheduleSlot:
    start: datetime
    end: datetime
    power_kw: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": format_timestamp(self.start),
            "end": format_timestamp(self.end),
            "power_kw": self.power_kw,
        }


@dataclass(frozen=True)
class ApplySchedule:
    """Battery power per time slot; slots are sorted and must not overlap."""

    slots: tuple[ScheduleSlot, ...]

    @classmethod
    def read(cls, r: Reader) -> ApplySchedule:
        readers = r.items("slots")
        if not readers:
            r.error("slots", "At least one slot is required.")
        if len(readers) > MAX_SLOTS:
            r.error("slots", f"At most {MAX_SLOTS} slots.")
        slots = []
        for s in readers:
            start, end = s.timestamp("start", required=True), s.timestamp("end", required=True)
            power = s.number("power_kw", required=True, **POWER_RANGE)
            if start and end and end <= start:
                s.error("end", "Must be after start.")
            if start and end and power is not None:
                slots.append(ScheduleSlot(start, end, power))
        slots.sort(key=lambda slot: slot.start)
        for before, after in zip(slots, slots[1:], strict=False):
            if after.start < before.end:
                r.error("slots", f"Slots overlap at {format_timestamp(after.start)}.")
                break
        return cls(slots=tuple(slots))


Params = SetBatteryPower | SetChargerPowerLimit | SetGridLimit | SetMode | ApplySchedule
# Each command's parameter reader (the classmethod `read` of its parameter class).
PARAMS: dict[str, Callable[[Reader], Params]] = {
    "set_battery_power": SetBatteryPower.read,
    "set_charger_power_limit": SetChargerPowerLimit.read,
    "set_grid_limit": SetGridLimit.read,
    "set_mode": SetMode.read,
    "apply_schedule": ApplySchedule.read,
}
COMMANDS = tuple(PARAMS)


@dataclass(frozen=True)
class DispatchCommand:
    """A command for a site; a setpoint holds until `valid_until` (or the configured default)."""

    site_id: str
    command: str
    params: Params
    timestamp: datetime
    command_id: str | None = None
    valid_until: datetime | None = None

    @classmethod
    def from_dict(cls, data: Any) -> DispatchCommand:
        return parse(cls.read, data)

    @classmethod
    def read(cls, r: Reader) -> DispatchCommand:
        """The command as read; only valid when `r` collected no errors (then `params` and
        `timestamp` are set)."""
        site_id = r.string("site_id", required=True, max_length=32) or ""
        command = r.string("command", required=True, choices=COMMANDS)
        timestamp = r.timestamp("timestamp", required=True)
        valid_until = r.timestamp("valid_until")
        if timestamp and valid_until and valid_until <= timestamp:
            r.error("valid_until", "Must be after timestamp.")
        params_reader = r.child("params", required=True)
        params = PARAMS[command](params_reader) if command and params_reader else None
        command_id = r.string("command_id", max_length=64)
        return cls(site_id, command or "", params, timestamp, command_id, valid_until)  # type: ignore[arg-type]

    def params_dict(self) -> dict[str, Any]:
        if isinstance(self.params, ApplySchedule):
            return {"slots": [slot.to_dict() for slot in self.params.slots]}
        return drop_none(self.params.__dict__.copy())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "site_id": self.site_id,
            "command": self.command,
            "params": self.params_dict(),
            "timestamp": format_timestamp(self.timestamp),
        }
        if self.command_id:
            out["command_id"] = self.command_id
        if self.valid_until:
            out["valid_until"] = format_timestamp(self.valid_until)
        return out


def parse_params(command: str, params: Any) -> Params:
    """Parse the params of `command` alone (e.g. to re-validate a stored command)."""
    if command not in PARAMS:
        raise SchemaError({"command": ["Must be one of: " + ", ".join(COMMANDS) + "."]})
    r = Reader(params, "params")
    parsed = PARAMS[command](r)
    r.raise_if_errors()
    return parsed
