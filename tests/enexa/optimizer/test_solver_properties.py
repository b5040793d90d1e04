"""Property tests of the solver over random prices, limits, SOC (also outside the band) and load
forecasts: a plan always comes back, within physics, consistent, with exactly its violations."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enexa.optimizer.problem import Battery, Problem
from enexa.optimizer.solver import VIOLATION_EPSILON, solve

# How far the plan's own numbers may drift from exact arithmetic (the LP's tolerances).
TOLERANCE = 1e-5
# A soft limit broken by more than this must be in the violations.
MUST_REPORT = 1e-4


@st.composite
def batteries(draw):
    soc_min = draw(st.floats(0, 40))
    soc_max = draw(st.floats(soc_min + 10, 100))
    return Battery(
        capacity_kwh=draw(st.floats(5, 1000)),
        max_charge_kw=draw(st.floats(0, 500)),
        max_discharge_kw=draw(st.floats(0, 500)),
        round_trip_efficiency=draw(st.floats(0.5, 1.0)),
        soc_min_pct=soc_min,
        soc_max_pct=soc_max,
        reserve_pct=draw(st.floats(soc_min, soc_max)),
    )


@st.composite
def problems(draw, max_slots=24):
    n = draw(st.integers(1, max_slots))
    battery = draw(batteries())
    prices = st.floats(-0.5, 2.0)
    return Problem(
        slot_minutes=draw(st.sampled_from([5, 15, 30, 60])),
        load_kw=tuple(draw(st.lists(st.floats(-100, 600), min_size=n, max_size=n))),
        import_price=tuple(draw(st.lists(prices, min_size=n, max_size=n))),
        export_price=tuple(draw(st.lists(prices, min_size=n, max_size=n))),
        soc_pct=draw(st.floats(0, 100)),  # also below and above the band
        battery=battery,
        grid_import_limit_kw=draw(st.floats(0, 700)),
        grid_export_limit_kw=draw(st.floats(0, 300)),
        demand_charge_per_kw=draw(st.sampled_from([0.0, 0.5, 15.0])),
        cycle_cost_per_kwh=draw(st.sampled_from([0.0, 0.001, 0.05])),
        terminal_soc_pct=draw(st.none() | st.floats(0, 100)),
    )


def soc_after_each_slot(problem, power_kw):
    """SOC (%) at each slot's end from the plan's power alone: the physics the plan must obey."""
    b = problem.battery
    eta = math.sqrt(b.round_trip_efficiency)
    dt = problem.slot_minutes / 60
    soc_kwh = problem.soc_pct / 100 * b.capacity_kwh
    out = []
    for p in power_kw:
        soc_kwh += (max(-p, 0) * eta - max(p, 0) / eta) * dt
        out.append(soc_kwh / b.capacity_kwh * 100)
    return out


def broken_limits(problem, plan):
    """(kind, slot) -> by how much the plan breaks each soft limit, computed here."""
    b = problem.battery
    found = {}
    for t, soc in enumerate(plan.soc_pct):
        found[("soc_below_min", t)] = b.soc_min_pct - soc
        found[("soc_below_reserve", t)] = b.reserve_pct - soc
        found[("soc_above_max", t)] = soc - b.soc_max_pct
        found[("grid_import_limit", t)] = plan.grid_import_kw[t] - problem.grid_import_limit_kw
        found[("grid_export_limit", t)] = plan.grid_export_kw[t] - problem.grid_export_limit_kw
    if problem.terminal_soc_pct is not None:
        found[("terminal_soc", problem.slots - 1)] = problem.terminal_soc_pct - plan.soc_pct[-1]
    return found


@settings(max_examples=80, deadline=None)
@given(problems())
def test_a_plan_always_comes_back_within_physics_and_consistent(problem):
    plan = solve(problem)
    b = problem.battery
    assert plan.status in ("optimal", "feasible_with_violations")
    assert len(plan.battery_power_kw) == len(plan.soc_pct) == problem.slots
    for t, power in enumerate(plan.battery_power_kw):
        assert -b.max_charge_kw - TOLERANCE <= power <= b.max_discharge_kw + TOLERANCE
        assert -TOLERANCE <= plan.soc_pct[t] <= 100 + TOLERANCE
        # The site's balance: what the grid gives is the load less what the battery gives.
        net = plan.grid_import_kw[t] - plan.grid_export_kw[t]
        assert net == _approx(problem.load_kw[t] - power)
        assert min(plan.grid_import_kw[t], plan.grid_export_kw[t]) == 0
    # SOC follows the power, slot length and efficiency (never charging and discharging at once,
    # which the net power could not show), to the LP's tolerance in kWh.
    expected = soc_after_each_slot(problem, plan.battery_power_kw)
    for got, want in zip(plan.soc_pct, expected, strict=True):
        assert abs(got - want) * b.capacity_kwh / 100 <= 1e-4 * max(1, b.capacity_kwh / 100)


@settings(max_examples=80, deadline=None)
@given(problems())
def test_violations_are_reported_exactly_when_a_soft_limit_is_broken(problem):
    plan = solve(problem)
    broken = broken_limits(problem, plan)
    reported = {(v.kind, v.slot): v.amount for v in plan.violations}
    assert len(reported) == len(plan.violations)  # one per kind and slot
    for key, amount in reported.items():
        assert amount > VIOLATION_EPSILON
        assert amount == _approx(broken[key])
    for key, excess in broken.items():
        if excess > MUST_REPORT:
            assert key in reported, f"{key} broken by {excess} but not reported"
    assert (plan.status == "optimal") == (not plan.violations)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_a_plan_breaks_no_limit_that_doing_nothing_keeps_and_costs_no_more(problem):
    """Penalties dominate prices: when leaving the battery idle breaks no soft limit, the plan
    breaks none either, and its bill plus cycling is at most the no-battery bill."""
    b = problem.battery
    # The same problem made such that idling breaks nothing: SOC within band and reserve,
    # limits above the load, the terminal target already met.
    problem = _replace(
        problem,
        soc_pct=min(max(problem.soc_pct, b.reserve_pct, b.soc_min_pct), b.soc_max_pct),
        grid_import_limit_kw=max(problem.grid_import_limit_kw, *problem.load_kw),
        grid_export_limit_kw=max(problem.grid_export_limit_kw, *(-x for x in problem.load_kw)),
    )
    if problem.terminal_soc_pct is not None:
        problem = _replace(problem, terminal_soc_pct=min(problem.terminal_soc_pct, problem.soc_pct))
    plan = solve(problem)
    assert plan.violations == ()
    dt = problem.slot_minutes / 60
    cycling = problem.cycle_cost_per_kwh * dt * sum(map(abs, plan.battery_power_kw))
    # Export is worth at most the import price to the plan (buying to sell in one slot is no
    # plan), so the bills compare at that valuation; it is the real one unless export pays more.
    export_worth = [
        min(e, i) for e, i in zip(problem.export_price, problem.import_price, strict=True)
    ]

    def bill(imports, exports):
        energy = sum(
            dt * (p_in * g - p_out * e)
            for p_in, p_out, g, e in zip(
                problem.import_price, export_worth, imports, exports, strict=True
            )
        )
        return energy + problem.demand_charge_per_kw * max(imports)

    idle = bill([max(x, 0) for x in problem.load_kw], [max(-x, 0) for x in problem.load_kw])
    planned = bill(plan.grid_import_kw, plan.grid_export_kw) + cycling
    assert planned <= idle + 1e-6 * max(1, abs(idle))
    if export_worth == list(problem.export_price):
        assert plan.cost + cycling == pytest.approx(planned, abs=1e-6 * max(1, abs(idle)))


@settings(max_examples=40, deadline=None)
@given(problems(max_slots=12))
def test_a_battery_below_its_band_charges_as_fast_as_the_grid_allows(problem):
    b = problem.battery
    start = min(problem.soc_pct, b.soc_min_pct - 1)
    if start < 0:
        return
    problem = _replace(problem, soc_pct=start)
    plan = solve(problem)
    eta = math.sqrt(b.round_trip_efficiency)
    dt = problem.slot_minutes / 60
    headroom = min(b.max_charge_kw, max(0.0, problem.grid_import_limit_kw - problem.load_kw[0]))
    fastest = start + headroom * eta * dt / b.capacity_kwh * 100
    assert plan.soc_pct[0] >= min(fastest, b.soc_min_pct) - 1e-4
    assert all(soc >= start - 1e-4 for soc in plan.soc_pct)  # never further down


def _approx(x):
    import pytest

    return pytest.approx(x, abs=TOLERANCE * max(1, abs(x)))


def _replace(problem, **changes):
    import dataclasses

    return dataclasses.replace(problem, **changes)
