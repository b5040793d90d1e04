"""The LP's optimum against an independent brute-force dynamic program over a fine SOC grid."""

import math

import numpy as np
import pytest

from enexa.optimizer.problem import Problem
from enexa.optimizer.solver import solve
from tests.enexa.optimizer.batteries import battery

# Every SOC step the LP can end a vertex on is a multiple of GRID_KWH here: full charge
# (40 kW * 0.25 h * 0.9 = 9 kWh), full discharge (36 kW * 0.25 h / 0.9 = 10 kWh), covering a
# load of k * 0.36 kW (k * 0.1 kWh), and the band (10 and 90 kWh). So the grid holds the LP's
# optimum and the two must agree to rounding, not merely to the grid's resolution.
GRID_KWH = 0.1
_SIZE = dict(capacity_kwh=100.0, round_trip_efficiency=0.81, reserve_pct=10.0)
BATTERY = battery(max_charge_kw=40.0, max_discharge_kw=36.0, **_SIZE)


def brute_force_cost(problem: Problem) -> float:
    """Backward dynamic program over SOC grid points in the band: the cheapest energy bill plus
    cycling cost of any trajectory through them (no demand charge, limits out of reach)."""
    b = problem.battery
    dt = problem.slot_minutes / 60
    eta = math.sqrt(b.round_trip_efficiency)
    lo = round(b.soc_min_pct / 100 * b.capacity_kwh / GRID_KWH)
    hi = round(b.soc_max_pct / 100 * b.capacity_kwh / GRID_KWH)
    levels = np.arange(lo, hi + 1) * GRID_KWH
    delta = levels[None, :] - levels[:, None]  # from row state to column state, kWh
    charge_kw = np.maximum(delta, 0) / (eta * dt)
    discharge_kw = np.maximum(-delta, 0) * eta / dt
    possible = (charge_kw <= b.max_charge_kw + 1e-9) & (discharge_kw <= b.max_discharge_kw + 1e-9)
    value = np.zeros(len(levels))  # cost to go from each level after the last slot
    for t in reversed(range(problem.slots)):
        net_kw = problem.load_kw[t] + charge_kw - discharge_kw
        stage = dt * (
            problem.import_price[t] * np.maximum(net_kw, 0)
            - problem.export_price[t] * np.maximum(-net_kw, 0)
            + problem.cycle_cost_per_kwh * (charge_kw + discharge_kw)
        )
        value = np.where(possible, stage + value[None, :], np.inf).min(axis=1)
    start = round(problem.soc_pct / 100 * b.capacity_kwh / GRID_KWH) - lo
    return float(value[start])


@pytest.mark.parametrize("seed", range(12))
def test_the_plans_cost_equals_the_brute_force_optimum_on_small_problems(seed):
    rng = np.random.default_rng(seed)
    slots = int(rng.integers(8, 13))
    import_price = rng.uniform(0.05, 0.6, slots).round(3)
    export_price = (import_price * rng.uniform(0.0, 1.0, slots)).round(3)
    problem = Problem(
        slot_minutes=15,
        load_kw=tuple(float(x) for x in rng.integers(0, 150, slots) * 0.36),
        import_price=tuple(import_price.tolist()),
        export_price=tuple(export_price.tolist()),
        soc_pct=float(rng.integers(10, 91)),
        battery=BATTERY,
        grid_import_limit_kw=10_000.0,
        grid_export_limit_kw=10_000.0,
        cycle_cost_per_kwh=0.002,
    )
    plan = solve(problem)
    cycling = problem.cycle_cost_per_kwh * 0.25 * sum(map(abs, plan.battery_power_kw))
    expected = brute_force_cost(problem)
    assert plan.status == "optimal"
    assert plan.cost + cycling == pytest.approx(expected, abs=1e-6 * max(1, abs(expected)))


def test_the_brute_force_sees_what_the_battery_is_worth():
    """The comparison above means something: on these prices the battery saves money."""
    problem = Problem(
        slot_minutes=15,
        load_kw=(36.0,) * 8,
        import_price=(0.1,) * 4 + (0.5,) * 4,
        export_price=(0.0,) * 8,
        soc_pct=10.0,
        battery=BATTERY,
        grid_import_limit_kw=10_000.0,
        grid_export_limit_kw=10_000.0,
    )
    idle = sum(0.25 * p * 36.0 for p in problem.import_price)
    assert brute_force_cost(problem) < idle - 1
    assert solve(problem).savings > 1
