"""Local autonomous mode: what the battery does while Enexa is unreachable.

Normal while Enexa answered within `autonomy.enter_after_s`; then the last valid schedule's slot
that covers now, until the schedule runs out; then a safe local policy: discharge to keep the
grid import under the connection limit (with a margin), charge from spare headroom while the
state of charge is below the reserve, never outside the SOC band. Where the battery cannot give
enough, the chargers are capped so the grid limit still holds. `decide` is pure; the gateway's
glue (write the setpoints and caps, record mode changes as events) is in autonomy_cycle."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from amperio.modbus import registers
from shared.fields import parse_timestamp

log = logging.getLogger(__name__)

DEFAULT_SOC_BAND_PCT = (10.0, 90.0)
DEFAULT_RESERVE_PCT = 20.0
DEFAULT_ENTER_AFTER_S = 60.0
# Used when a unit does not report its allowed power (a ChargePost unit is 110 kW).
DEFAULT_UNIT_MAX_KW = 110.0
# A charger's power when the configuration names no maximum (the ChargePost's 300 kW).
DEFAULT_CHARGER_MAX_KW = 300.0
_UNIT = re.compile(r"^(bat\d+)_soc_pct$")
_CHARGER = re.compile(r"^(chg\d+)_power_kw$")


@dataclass(frozen=True)
class Decision:
    """The mode and the battery power (total, positive = discharge; None = not ours to set)."""

    mode: str
    battery_power_kw: float | None
    reason: str
    unit_power_kw: dict[str, float] = field(default_factory=dict)  # "bat1" -> kW
    charger_limit_kw: dict[str, float] = field(default_factory=dict)  # "chg1" -> kW; {} = uncapped

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "battery_power_kw": self.battery_power_kw,
            "reason": self.reason,
            "unit_power_kw": dict(self.unit_power_kw),
            "charger_limit_kw": dict(self.charger_limit_kw),
        }


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


@dataclass(frozen=True)
class AutonomyPolicy:
    """The numbers the policy works with, from the gateway's configuration."""

    grid_limit_kw: float | None
    soc_min_pct: float = DEFAULT_SOC_BAND_PCT[0]
    soc_max_pct: float = DEFAULT_SOC_BAND_PCT[1]
    reserve_pct: float = DEFAULT_RESERVE_PCT
    enter_after_s: float = DEFAULT_ENTER_AFTER_S
    margin_kw: float | None = None
    follow_schedule: bool = True
    # The configured battery power caps (`battery.max_charge_kw` / `max_discharge_kw`).
    max_charge_kw: float | None = None
    max_discharge_kw: float | None = None

    @classmethod
    def from_config(
        cls, config: dict[str, Any], snapshot: dict[str, Any] | None = None
    ) -> AutonomyPolicy:
        """From the gateway configuration (`{"settings": ..., "limits": ...}`) or its settings
        alone; the grid limit falls back on the limits, then on the unit's own register."""
        settings = config.get("settings") if isinstance(config.get("settings"), dict) else config
        limits = config.get("limits") or {}

        def first(*values: Any, default: float | None = None) -> float | None:
            return next((v for v in map(_num, values) if v is not None), default)

        return cls(
            grid_limit_kw=first(
                _get(settings, "grid.limit_kw"),
                _get(limits, "grid.limit_kw"),
                (snapshot or {}).get(registers.SITE_GRID_LIMIT),
            ),
            soc_min_pct=first(
                _get(settings, "battery.soc_min_pct"),
                _get(limits, "battery.soc_min_pct"),
                default=DEFAULT_SOC_BAND_PCT[0],
            )
            or 0.0,
            soc_max_pct=first(
                _get(settings, "battery.soc_max_pct"),
                _get(limits, "battery.soc_max_pct"),
                default=DEFAULT_SOC_BAND_PCT[1],
            )
            or 0.0,
            reserve_pct=first(_get(settings, "battery.reserve_pct"), default=DEFAULT_RESERVE_PCT)
            or 0.0,
            enter_after_s=first(
                _get(settings, "autonomy.enter_after_s"), default=DEFAULT_ENTER_AFTER_S
            )
            or 0.0,
            margin_kw=first(_get(settings, "autonomy.margin_kw")),
            follow_schedule=_get(settings, "autonomy.mode") != "safe",
            max_charge_kw=first(_get(settings, "battery.max_charge_kw")),
            max_discharge_kw=first(_get(settings, "battery.max_discharge_kw")),
        )

    def capped(self, total_kw: float) -> float:
        """`total_kw` (positive: discharge) within the configured battery power caps."""
        if total_kw > 0 and self.max_discharge_kw is not None:
            return min(total_kw, self.max_discharge_kw)
        if total_kw < 0 and self.max_charge_kw is not None:
            return max(total_kw, -self.max_charge_kw)
        return total_kw

    @property
    def target_import_kw(self) -> float | None:
        """The import the policy aims under: the limit less a margin (5 %, at least 2 kW), so
        a load step between two cycles does not cross the limit itself."""
        if self.grid_limit_kw is None:
            return None
        margin = self.margin_kw if self.margin_kw is not None else max(2.0, self.grid_limit_kw / 20)
        return self.grid_limit_kw - margin


@dataclass(frozen=True)
class _Unit:
    name: str
    soc_pct: float
    power_kw: float
    allowed_charge_kw: float
    allowed_discharge_kw: float


def units_in(snapshot: dict[str, Any]) -> list[_Unit]:
    units = []
    for key in sorted(snapshot):
        match = _UNIT.match(key)
        soc = _num(snapshot[key])
        if not match or soc is None:
            continue
        name = match.group(1)
        charge = _num(snapshot.get(registers.battery_allowed(name, "charge")))
        discharge = _num(snapshot.get(registers.battery_allowed(name, "discharge")))
        units.append(
            _Unit(
                name=name,
                soc_pct=soc,
                power_kw=_num(snapshot.get(registers.battery(name, "power_kw"))) or 0.0,
                allowed_charge_kw=DEFAULT_UNIT_MAX_KW if charge is None else max(0.0, charge),
                allowed_discharge_kw=DEFAULT_UNIT_MAX_KW
                if discharge is None
                else max(0.0, discharge),
            )
        )
    return units


@dataclass(frozen=True)
class _Charger:
    name: str
    power_kw: float
    max_kw: float
    occupied: bool  # a vehicle is plugged in (or power flows)


def chargers_in(snapshot: dict[str, Any], config: dict[str, Any]) -> list[_Charger]:
    configured = (config.get("limits") or {}).get("chargers") or {}
    chargers = []
    for key in sorted(snapshot):
        match = _CHARGER.match(key)
        power = _num(snapshot[key])
        if not match or power is None:
            continue
        name = match.group(1)
        max_kw = _num((configured.get(name.upper()) or {}).get("max_power_kw"))
        plugged = _num(snapshot.get(registers.charger(name, "connector_state")))
        chargers.append(
            _Charger(
                name=name,
                power_kw=power,
                max_kw=DEFAULT_CHARGER_MAX_KW if max_kw is None else max_kw,
                occupied=power > 0.5 or plugged == 1,
            )
        )
    return chargers


def charger_caps(budget_kw: float, chargers: list[_Charger]) -> dict[str, float]:
    """Share what the chargers may draw together: chargers with a vehicle first, in proportion
    to their maximum, and what they leave to the idle ones (so a vehicle arriving is not held
    at zero). Every charger gets a cap, none above its maximum nor below zero."""
    caps: dict[str, float] = {}
    left = max(budget_kw, 0.0)
    for group in ([c for c in chargers if c.occupied], [c for c in chargers if not c.occupied]):
        total_max = sum(c.max_kw for c in group)
        fraction = min(1.0, left / total_max) if total_max > 0 else 0.0
        for c in group:
            caps[c.name] = round(c.max_kw * fraction, 1)
        left -= sum(caps[c.name] for c in group)
    return caps


def _site_demand_kw(snapshot: dict[str, Any], units: list[_Unit]) -> float | None:
    """What the site would draw from the grid with the battery idle."""
    grid_import = _num(snapshot.get("grid_import_kw"))
    if grid_import is not None:
        net = grid_import - (_num(snapshot.get("grid_export_kw")) or 0.0)
        return net + sum(u.power_kw for u in units)
    load = _num(snapshot.get("site_load_kw"))
    chargers = [v for k, v in snapshot.items() if _CHARGER.match(k) and _num(v) is not None]
    if load is None and not chargers:
        return None
    return (load or 0.0) + sum(float(v) for v in chargers)


def split_by_soc(total_kw: float, units: list[_Unit], policy: AutonomyPolicy) -> dict[str, float]:
    """Share a total among the units: a discharge by the energy each holds above the SOC
    minimum, a charge by the room each has below the maximum; no unit beyond its allowed power
    or outside the band. The sum may fall short of `total_kw` when the units cannot do it."""
    discharge = total_kw > 0
    caps, weights = {}, {}
    for u in units:
        if discharge:
            room, cap = u.soc_pct - policy.soc_min_pct, u.allowed_discharge_kw
        else:
            room, cap = policy.soc_max_pct - u.soc_pct, u.allowed_charge_kw
        caps[u.name] = cap if room > 0 else 0.0
        weights[u.name] = max(room, 0.0)
    shares = {u.name: 0.0 for u in units}
    remaining = abs(total_kw)
    active = [n for n in shares if caps[n] > 0 and weights[n] > 0]
    while remaining > 1e-6 and active:
        weight_sum = sum(weights[n] for n in active)
        given = 0.0
        for n in active:
            give = min(remaining * weights[n] / weight_sum, caps[n] - shares[n])
            shares[n] += give
            given += give
        remaining -= given
        active = [n for n in active if caps[n] - shares[n] > 1e-6]
        if given <= 1e-9:
            break
    sign = 1.0 if discharge else -1.0
    return {n: round(sign * s, 2) for n, s in shares.items()}


def parse_when(value: Any) -> datetime | None:
    """A moment given as an aware datetime or an RFC 3339 string; None otherwise."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    return parse_timestamp(value)


def _slot_now(schedule: list[dict[str, Any]] | None, now: datetime) -> dict[str, Any] | None:
    for slot in schedule or []:
        start, end = parse_when(slot.get("start")), parse_when(slot.get("end"))
        power = _num(slot.get("power_kw"))
        if start is None or end is None or power is None or not start < end:
            continue  # not a valid slot: skipped, never guessed at
        if start <= now < end:
            return {**slot, "power_kw": power}
    return None


def _decision(
    mode: str, total: float, units: list[_Unit], policy: AutonomyPolicy, reason: str
) -> Decision:
    total = policy.capped(total)
    shares = split_by_soc(total, units, policy) if total else {u.name: 0.0 for u in units}
    return Decision(mode, round(sum(shares.values()), 2), reason, shares)


def decide(
    now: datetime,
    snapshot: dict[str, Any],
    config: dict[str, Any],
    schedule: list[dict[str, Any]] | None,
    enexa_last_ok_at: datetime | str | None,
) -> Decision:
    """The mode for now and, outside normal mode, the battery power to hold and the chargers'
    caps where the battery cannot keep the grid import under the limit on its own."""
    policy = AutonomyPolicy.from_config(config, snapshot)
    last_ok = parse_when(enexa_last_ok_at)
    if last_ok is not None and (now - last_ok).total_seconds() <= policy.enter_after_s:
        return Decision("normal", None, "Enexa reachable: its dispatch holds.")
    units = units_in(snapshot)
    demand = _site_demand_kw(snapshot, units)
    target = policy.target_import_kw
    decision = _battery_decision(now, policy, units, schedule, demand, target)
    chargers = chargers_in(snapshot, config)
    return _with_charger_caps(decision, chargers, policy, units, demand, target)


def _with_charger_caps(
    decision: Decision,
    chargers: list[_Charger],
    policy: AutonomyPolicy,
    units: list[_Unit],
    demand: float | None,
    target: float | None,
) -> Decision:
    """Cap the chargers when the site's other load and all the battery can give leave them less
    than their maxima under the target. The budget does not depend on what the chargers draw
    now (a capped charger draws its cap), so the caps hold steady from cycle to cycle."""
    if not chargers or demand is None or target is None:
        return decision
    other_load = demand - sum(c.power_kw for c in chargers)
    # Every unit above the SOC minimum at its allowed discharge, within the configured cap.
    battery_can_give = policy.capped(
        sum(u.allowed_discharge_kw for u in units if u.soc_pct > policy.soc_min_pct)
    )
    budget = target - other_load + battery_can_give
    if budget >= sum(c.max_kw for c in chargers):
        return decision
    caps = charger_caps(budget, chargers)
    return replace(
        decision,
        reason=decision.reason + f" Chargers capped at {sum(caps.values()):.1f} kW in all: the "
        "battery cannot cover more.",
        charger_limit_kw=caps,
    )


def _battery_decision(
    now: datetime,
    policy: AutonomyPolicy,
    units: list[_Unit],
    schedule: list[dict[str, Any]] | None,
    demand: float | None,
    target: float | None,
) -> Decision:
    """The battery's part of the decision; `demand` is the site's draw with the battery idle,
    `target` the import to stay under (None where unknown)."""
    # Discharge the grid limit needs (negative: headroom left for charging).
    need = demand - target if demand is not None and target is not None else None

    slot = _slot_now(schedule, now) if policy.follow_schedule else None
    if slot is not None:
        power = slot["power_kw"]
        reason = f"Enexa unreachable: following the schedule slot ending {slot['end']}."
        if need is not None and power < need:
            # The schedule was planned for another load: the grid limit comes first.
            power = need
            reason += f" Raised to {need:.1f} kW to keep the grid import under the limit."
        return _decision("schedule", power, units, policy, reason)

    if need is None:
        return _decision(
            "safe_local", 0.0, units, policy, "Safe local: no grid limit or meter data, idle."
        )
    if need > 0:
        decision = _decision(
            "safe_local",
            need,
            units,
            policy,
            f"Safe local: discharging to keep the grid import under {policy.grid_limit_kw:g} kW.",
        )
        if decision.battery_power_kw is not None and decision.battery_power_kw < need - 0.01:
            decision = replace(
                decision,
                reason=decision.reason + f" The battery can give {decision.battery_power_kw:.1f} "
                f"of {need:.1f} kW.",
            )
        return decision
    soc = [u.soc_pct for u in units]
    if soc and sum(soc) / len(soc) < policy.reserve_pct:
        return _decision(
            "safe_local",
            need,  # negative: charge from the headroom only
            units,
            policy,
            f"Safe local: charging towards the {policy.reserve_pct:g} % reserve from spare "
            "grid headroom.",
        )
    return _decision("safe_local", 0.0, units, policy, "Safe local: under the limit, idle.")
