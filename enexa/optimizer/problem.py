"""What the optimizer is asked and what it answers: plain values, no Django, no solver.

The planning service (`enexa.optimizer.services`) builds a `Problem` from a site's registry,
configuration, prices and load forecast; `enexa.optimizer.solver.solve` answers a `Solution`.
Signs follow the telemetry: battery power is + when discharging, - when charging."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Battery:
    """The site's battery taken as one: every unit's capacity and limits summed."""

    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    round_trip_efficiency: float  # 0 < eff <= 1; split evenly between charge and discharge
    soc_min_pct: float
    soc_max_pct: float
    reserve_pct: float  # a soft floor above soc_min_pct the plan keeps unless it costs a violation


@dataclass(frozen=True)
class Problem:
    """One site's planning problem over consecutive slots of equal length."""

    slot_minutes: int
    load_kw: tuple[float, ...]  # forecast site consumption per slot (chargers and the rest)
    import_price: tuple[float, ...]  # per kWh, one per slot
    export_price: tuple[float, ...]  # per kWh, one per slot
    soc_pct: float  # measured at the start of the first slot; may lie outside the band
    battery: Battery
    grid_import_limit_kw: float
    grid_export_limit_kw: float
    demand_charge_per_kw: float = 0.0  # on the horizon's peak import
    cycle_cost_per_kwh: float = 0.001  # per kWh through the battery, so it does not churn
    terminal_soc_pct: float | None = None  # soft target for the end of the horizon

    @property
    def slots(self) -> int:
        return len(self.load_kw)


# Every kind of `Violation`: percentage points for the SOC ones, kW for the grid ones.
VIOLATION_KINDS = (
    "soc_below_min",
    "soc_below_reserve",
    "soc_above_max",
    "grid_import_limit",
    "grid_export_limit",
    "terminal_soc",  # short of terminal_soc_pct, at the last slot
)


@dataclass(frozen=True)
class Violation:
    """A soft limit the plan breaks: `kind` (one of `VIOLATION_KINDS`), the slot index and the
    amount (kW or percentage points, by kind)."""

    kind: str
    slot: int
    amount: float


@dataclass(frozen=True)
class Solution:
    """The plan's numbers per slot, its cost against the no-battery baseline, its violations."""

    status: str  # "optimal" or "feasible_with_violations"; never infeasible
    battery_power_kw: tuple[float, ...]  # + discharge, - charge
    soc_pct: tuple[float, ...]  # at each slot's end
    grid_import_kw: tuple[float, ...]
    grid_export_kw: tuple[float, ...]
    cost: float  # energy bought - energy sold + demand charge (cycling cost excluded)
    baseline_cost: float  # the same without the battery
    violations: tuple[Violation, ...] = field(default=())
    solve_ms: float = 0.0

    @property
    def savings(self) -> float:
        return self.baseline_cost - self.cost
