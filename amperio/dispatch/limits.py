"""The equipment limits a command must keep, and how long its setpoint may hold.

Limits come from the applied configuration (`operating_limits`); a command that breaks one is
refused naming the limit. Validity and reversion timeouts come from its `settings`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from amperio.dispatch.errors import CommandError
from shared import site_config
from shared.dispatch import (
    ApplySchedule,
    DispatchCommand,
    SetBatteryPower,
    SetChargerPowerLimit,
    SetGridLimit,
)
from shared.fields import format_timestamp

DEFAULT_SETPOINT_VALIDITY_S = float(site_config.DEFAULTS["setpoint_validity_s"])
# How long the hardware keeps a setpoint without a fresh write; several reassert cycles, so a
# missed cycle is harmless but a dead gateway hands control back to the unit quickly.
DEFAULT_REVERSION_TIMEOUT_S = 60


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


def configured_grid_limit_kw(config: dict[str, Any]) -> float | None:
    """The grid limit the unit holds when no dispatch does: the configured one (which Enexa
    keeps within the connection limit), else the connection limit itself."""
    for section in ("settings", "limits"):
        value = ((config.get(section) or {}).get("grid") or {}).get("limit_kw")
        if value is not None:
            return float(value)
    return None


def check_limits(cmd: DispatchCommand, limits: dict[str, Any]) -> None:
    """Refuse a command that breaks the equipment limits, naming the limit in the message."""
    errors: dict[str, list[str]] = {}
    params = cmd.params
    if isinstance(params, SetBatteryPower):
        _check_battery_power(errors, limits, "params.power_kw", params.power_kw, params.unit_id)
    elif isinstance(params, ApplySchedule):
        for i, slot in enumerate(params.slots):
            _check_battery_power(errors, limits, f"params.slots.{i}.power_kw", slot.power_kw, None)
    elif isinstance(params, SetChargerPowerLimit):
        _check_charger_limit(errors, limits, params)
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


def _check_battery_power(
    errors: dict[str, list[str]],
    limits: dict[str, Any],
    path: str,
    power_kw: float,
    unit_id: str | None,
) -> None:
    """A battery power (the site's, or one unit's) against its charge or discharge limit."""
    battery = limits.get("battery") or {}
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


def _check_charger_limit(
    errors: dict[str, list[str]], limits: dict[str, Any], params: SetChargerPowerLimit
) -> None:
    chargers = limits.get("chargers") or {}
    if params.charger_id not in chargers:
        known = ", ".join(sorted(chargers)) or "none"
        errors["params.charger_id"] = [
            f"Unknown charger {params.charger_id}; this site has: {known}."
        ]
        return
    limit = chargers[params.charger_id].get("max_power_kw")
    if limit is not None and params.limit_kw > limit:
        errors["params.limit_kw"] = [
            f"{params.limit_kw:g} kW exceeds charger {params.charger_id}'s maximum "
            f"power of {limit:g} kW."
        ]
