"""What a command writes: the register values of each command, and the leases they start."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from amperio.dispatch.errors import CommandError
from amperio.dispatch.limits import configured_grid_limit_kw
from amperio.dispatch.records import RegisterClient
from amperio.modbus import registers
from amperio.modbus.errors import ModbusError
from shared.dispatch import (
    ApplySchedule,
    DispatchCommand,
    ScheduleSlot,
    SetBatteryPower,
    SetChargerPowerLimit,
    SetGridLimit,
    SetMode,
)

logger = logging.getLogger(__name__)

BATTERY_UNITS = registers.BATTERY_UNITS


def battery_units(client: RegisterClient) -> tuple[str, ...]:
    """The battery units `client` reaches: every ChargePost's on a site of several
    (amperio.chargeposts.SiteClient), else one ChargePost's."""
    units: tuple[str, ...] = getattr(client, "battery_units", BATTERY_UNITS)
    return units


@dataclass
class Plan:
    """The register writes of one command, and the leases they start."""

    writes: list[tuple[str, float]] = field(default_factory=list)
    # register -> value the unit returns to when the lease ends
    leases: dict[str, float] = field(default_factory=dict)
    detail: str = ""
    # when the leases end, where that is not the command's validity (a schedule slot's end)
    lease_until: datetime | None = None

    def lease_battery(self, shares: dict[str, float]) -> None:
        """Write each unit's share to its setpoint, leased with 0 (idle) as the default."""
        for unit, share in shares.items():
            name = registers.battery_setpoint(unit)
            self.writes.append((name, share))
            self.leases[name] = 0.0


def plan_command(
    cmd: DispatchCommand, client: RegisterClient, config: dict[str, Any], now: datetime
) -> Plan:
    """The writes and leases of `cmd` (reads the units' allowed power to split a site setpoint)."""
    params = cmd.params
    limits = config.get("limits") or {}
    if isinstance(params, SetBatteryPower):
        plan = Plan()
        plan.lease_battery(
            {params.unit_id: params.power_kw}
            if params.unit_id
            else split_battery_power(params.power_kw, client, limits)
        )
        return plan
    if isinstance(params, SetChargerPowerLimit):
        name = registers.charger_limit(params.charger_id)
        default = (
            (limits.get("chargers") or {})
            .get(params.charger_id, {})
            .get("max_power_kw", params.limit_kw)
        )
        return Plan(writes=[(name, params.limit_kw)], leases={name: float(default)})
    if isinstance(params, SetGridLimit):
        grid_default = configured_grid_limit_kw(config)
        grid_default = params.limit_kw if grid_default is None else grid_default
        return Plan(
            writes=[(registers.SITE_GRID_LIMIT, params.limit_kw)],
            leases={registers.SITE_GRID_LIMIT: float(grid_default)},
        )
    if isinstance(params, SetMode):
        # The unit's operating_mode register is read-only (it reports the watchdog's safe
        # state), so the mode is the gateway's: auto follows schedules, manual only
        # dispatches, safe stops the batteries and drops every lease.
        plan = Plan(detail=f"Gateway mode set to {params.mode}.")
        if params.mode == "safe":
            plan.writes = [(registers.battery_setpoint(u), 0.0) for u in battery_units(client)]
        return plan
    if isinstance(params, ApplySchedule):
        slot = _slot_at(params, now)
        plan = Plan(
            detail=f"Schedule of {len(params.slots)} slots stored for autonomous operation."
        )
        if slot is not None:
            plan.lease_until = slot.end
            plan.lease_battery(split_battery_power(slot.power_kw, client, limits))
        return plan
    raise CommandError(f"Unsupported command {cmd.command}.")


def split_battery_power(
    power_kw: float, client: RegisterClient, limits: dict[str, Any]
) -> dict[str, float]:
    """Split a site battery setpoint over the units (of every ChargePost) in proportion to what
    each allows now, so no unit is asked for more than it can do while another has room.

    The units' allowed charge/discharge power comes from the hardware; where a unit reports
    none (undefined), its configured maximum stands in."""
    direction = "discharge" if power_kw >= 0 else "charge"
    configured = (limits.get("battery") or {}).get("units") or {}
    units = battery_units(client)
    names = {unit: registers.battery_allowed(unit, direction) for unit in units}
    now_allowed = client.read(list(names.values()))
    weights: dict[str, float] = {}
    for unit in units:
        allowed = now_allowed.get(names[unit])
        if allowed is None:
            allowed = configured.get(unit, {}).get(f"max_{direction}_kw", 0.0)
        weights[unit] = max(0.0, float(allowed or 0.0))
    total = sum(weights.values())
    if total <= 0:
        return {unit: round(power_kw / len(units), 1) for unit in units}
    shares = {unit: round(power_kw * w / total, 1) for unit, w in weights.items()}
    # Rounding must not change the total the site asked for.
    first = units[0]
    shares[first] = round(shares[first] + power_kw - sum(shares.values()), 1)
    return shares


def _slot_at(schedule: ApplySchedule, now: datetime) -> ScheduleSlot | None:
    return next((s for s in schedule.slots if s.start <= now < s.end), None)


def with_reversion(plan: Plan, timeout_s: int) -> list[tuple[str, float]]:
    """Arm each battery unit's reversion (to 0 after `timeout_s`) before its setpoint."""
    out: list[tuple[str, float]] = []
    for name, value in plan.writes:
        unit = registers.battery_unit_of(name)
        if unit:
            out.append((registers.battery_reversion_power(unit), 0.0))
            out.append((registers.battery_reversion_timeout(unit), timeout_s))
        out.append((name, value))
    return out


def undo(client: RegisterClient, plan: Plan) -> None:
    """After a write failed part way, put the setpoints back to their defaults if we can."""
    if not plan.leases:
        return
    try:
        client.write_many(dict(plan.leases))
    except ModbusError:  # the link is down: the hardware reversion timer still applies
        logger.warning("could not undo %s after a failed command", ", ".join(plan.leases))


def battery_setpoint_registers(names: Iterable[str]) -> set[str]:
    """The battery units' power setpoint registers among `names` (a lease on one also arms its
    unit's reversion timeout)."""
    return {name for name in names if registers.battery_unit_of(name)}
