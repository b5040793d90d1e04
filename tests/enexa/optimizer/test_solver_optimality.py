"""The LP's optimum against an independent brute-force dynamic program over a fine SOC grid."""

import functools
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
NO_LIMIT_KW = 10_000.0


def brute_force_cost(
    problem: Problem, peak_cap_kw: float = math.inf, grid_kwh: float = GRID_KWH
) -> float:
    """Backward dynamic program over SOC grid points in the band: the cheapest energy bill plus
    cycling cost of any trajectory through them that never imports above `peak_cap_kw` (grid
    limits out of reach; the demand charge is left to the caller)."""
    b = problem.battery
    dt = problem.slot_minutes / 60
    eta = math.sqrt(b.round_trip_efficiency)
    lo = round(b.soc_min_pct / 100 * b.capacity_kwh / grid_kwh)
    hi = round(b.soc_max_pct / 100 * b.capacity_kwh / grid_kwh)
    levels = np.arange(lo, hi + 1) * grid_kwh
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
        allowed = possible & (net_kw <= peak_cap_kw + 1e-9)
        value = np.where(allowed, stage + value[None, :], np.inf).min(axis=1)
    start = round(problem.soc_pct / 100 * b.capacity_kwh / grid_kwh) - lo
    return float(value[start])


def brute_force_cost_with_demand_charge(problem: Problem, peak_step_kw: float) -> float:
    """The cheapest bill with the demand charge: for each peak import allowed (a grid of
    `peak_step_kw`), the dynamic program under that cap plus the charge on the cap. The bill is
    convex in the cap (infinite below the caps that can be kept): a ternary search finds it."""

    dt = problem.slot_minutes / 60

    @functools.cache
    def bill(steps: int) -> float:
        cap_kw = steps * peak_step_kw
        energy = brute_force_cost(problem, cap_kw, grid_kwh=peak_step_kw * dt)
        return energy + problem.demand_charge_per_kw * cap_kw

    low, high = 0, math.ceil(max(problem.load_kw) / peak_step_kw)
    while high - low > 2:
        a, b = low + (high - low) // 3, high - (high - low) // 3
        if math.isinf(bill(a)) or bill(a) > bill(b):
            low = a
        else:
            high = b
    return min(bill(s) for s in range(low, high + 1))


def random_problem(rng, slots, load_step_kw, **changes) -> Problem:
    """Random prices (export at most import), loads on a grid of `load_step_kw`, SOC in band."""
    import_price = rng.uniform(0.05, 0.6, slots).round(3)
    fields = dict(
        slot_minutes=15,
        load_kw=tuple(float(x) for x in rng.integers(0, 150, slots) * load_step_kw),
        import_price=tuple(import_price.tolist()),
        export_price=tuple((import_price * rng.uniform(0.0, 1.0, slots)).round(3).tolist()),
        soc_pct=float(rng.integers(10, 91)),
        battery=BATTERY,
        grid_import_limit_kw=NO_LIMIT_KW,
        grid_export_limit_kw=NO_LIMIT_KW,
        cycle_cost_per_kwh=0.002,
    )
    fields.update(changes)
    return Problem(**fields)


def lp_cost(problem: Problem) -> float:
    """The plan's bill plus its cycling cost: the LP's objective without penalties."""
    plan = solve(problem)
    assert plan.status == "optimal"
    dt = problem.slot_minutes / 60
    return plan.cost + problem.cycle_cost_per_kwh * dt * sum(map(abs, plan.battery_power_kw))


@pytest.mark.parametrize("seed", range(12))
def test_the_plans_cost_equals_the_brute_force_optimum_on_small_problems(seed):
    rng = np.random.default_rng(seed)
    problem = random_problem(rng, int(rng.integers(8, 13)), 0.36)
    expected = brute_force_cost(problem)
    assert lp_cost(problem) == pytest.approx(expected, abs=1e-6 * max(1, abs(expected)))


@pytest.mark.parametrize("seed", range(3))
def test_with_a_demand_charge_the_plans_cost_matches_the_brute_force_to_its_grid(seed):
    # Efficiency 1: steps of 0.2 kWh are 0.8 kW over 15 minutes, so loads, power limits and
    # the band lie on the grid; the LP's peak may lie between two caps of the brute force,
    # which costs the brute force at most one cap step of demand charge and its energy.
    peak_step_kw = 0.8
    rng = np.random.default_rng(100 + seed)
    lossless = battery(**{**_SIZE, "round_trip_efficiency": 1.0, "max_discharge_kw": 40.0})
    problem = random_problem(rng, 8, peak_step_kw, battery=lossless, demand_charge_per_kw=2.0)
    expected = brute_force_cost_with_demand_charge(problem, peak_step_kw)
    got = lp_cost(problem)
    assert got <= expected + 1e-6
    assert got >= expected - problem.demand_charge_per_kw * peak_step_kw - 0.05


def test_the_brute_force_sees_what_the_battery_is_worth():
    """The comparison above means something: on these prices the battery saves money."""
    problem = random_problem(
        np.random.default_rng(0),
        8,
        0.36,
        load_kw=(36.0,) * 8,
        import_price=(0.1,) * 4 + (0.5,) * 4,
        export_price=(0.0,) * 8,
        soc_pct=10.0,
    )
    idle = sum(0.25 * p * 36.0 for p in problem.import_price)
    assert brute_force_cost(problem) < idle - 1
    assert solve(problem).savings > 1
