"""What an operator sees the plan do: arbitrage, peak shaving, a grid limit it cannot keep, a
battery below its band, a terminal target out of reach, and the same plan warm or cold."""

import numpy as np
import pytest

from enexa.optimizer.problem import Problem
from enexa.optimizer.solver import _follow_net_power, clear_cache, solve
from tests.enexa.optimizer.batteries import SITE_BATTERY, battery

BATTERY = SITE_BATTERY
NIGHT = range(0, 24)  # 00:00-06:00 in 15-minute slots
EVENING = range(68, 84)  # 17:00-21:00


def day(**changes) -> Problem:
    """A flat 50 kW site over one day of 15-minute slots, flat prices unless changed."""
    fields = dict(
        slot_minutes=15,
        load_kw=(50.0,) * 96,
        import_price=(0.25,) * 96,
        export_price=(0.05,) * 96,
        soc_pct=50.0,
        battery=BATTERY,
        grid_import_limit_kw=400.0,
        grid_export_limit_kw=400.0,
    )
    fields.update(changes)
    return Problem(**fields)


def kinds(plan) -> set[str]:
    return {v.kind for v in plan.violations}


def test_the_battery_charges_in_the_cheap_night_and_discharges_in_the_expensive_evening():
    prices = tuple(0.10 if t in NIGHT else 0.45 if t in EVENING else 0.25 for t in range(96))
    plan = solve(day(import_price=prices, soc_pct=20.0))
    power = plan.battery_power_kw
    charged_at_night = -sum(p for t, p in enumerate(power) if t in NIGHT and p < 0)
    discharged_in_evening = sum(p for t, p in enumerate(power) if t in EVENING and p > 0)
    assert charged_at_night > 100  # kW summed over slots: some 25 kWh at least
    assert discharged_in_evening > 100
    assert all(p <= 1e-6 for t, p in enumerate(power) if t in NIGHT)
    assert all(p >= -1e-6 for t, p in enumerate(power) if t in EVENING)
    assert plan.status == "optimal"
    assert plan.savings > 5


def test_flat_prices_leave_a_battery_at_its_reserve_idle():
    """Round-trip losses make cycling on flat prices a loss. (Above the reserve the plan sells
    what is stored by the horizon's end: stored energy is worth nothing after it unless a
    terminal target says so.)"""
    plan = solve(day(soc_pct=BATTERY.reserve_pct))
    assert max(map(abs, plan.battery_power_kw)) < 1e-6
    assert plan.cost == pytest.approx(plan.baseline_cost)


def test_a_demand_charge_lowers_the_peak_import():
    load = tuple(150.0 if 40 <= t < 44 else 50.0 for t in range(96))
    without = solve(day(load_kw=load))
    with_charge = solve(day(load_kw=load, demand_charge_per_kw=10.0))
    assert max(without.grid_import_kw) == pytest.approx(150.0)
    assert max(with_charge.grid_import_kw) < 60.0  # the battery shaves the hour of 150 kW
    assert with_charge.cost < with_charge.baseline_cost - 900  # ~ 10 x 90 kW of peak saved


def test_a_grid_limit_below_the_load_is_covered_at_battery_power_the_rest_a_violation():
    load = tuple(300.0 if 40 <= t < 44 else 50.0 for t in range(96))
    small = battery(max_discharge_kw=60.0)
    plan = solve(day(load_kw=load, grid_import_limit_kw=200.0, battery=small))
    for t in range(40, 44):
        assert plan.battery_power_kw[t] == pytest.approx(60.0, abs=1e-6)
        assert plan.grid_import_kw[t] == pytest.approx(240.0, abs=1e-6)
    over = [v for v in plan.violations if v.kind == "grid_import_limit"]
    assert [(v.slot, v.amount) for v in over] == [(t, pytest.approx(40.0)) for t in range(40, 44)]
    assert plan.status == "feasible_with_violations"


def test_a_battery_covers_a_grid_limit_from_what_it_stored_and_never_below_its_band():
    load = tuple(300.0 if 40 <= t < 44 else 50.0 for t in range(96))
    plan = solve(day(load_kw=load, grid_import_limit_kw=200.0, soc_pct=25.0))
    # 100 kWh over the limit at 10:00: the battery fills up before (the grid has room), then
    # covers it all, into its reserve if it must, never below its band.
    assert "grid_import_limit" not in kinds(plan)
    assert min(plan.soc_pct) >= BATTERY.soc_min_pct - 1e-6
    assert "soc_below_min" not in kinds(plan)

    short = solve(day(load_kw=(300.0,) * 96, grid_import_limit_kw=200.0, soc_pct=25.0))
    # No room to charge all day: the battery empties to its band, the rest is a violation.
    assert min(short.soc_pct) == pytest.approx(BATTERY.soc_min_pct, abs=1e-6)
    assert "soc_below_min" not in kinds(short)
    over = [v for v in short.violations if v.kind == "grid_import_limit"]
    delivered_kwh = (25.0 - 10.0) / 100 * 200 * 0.9**0.5
    covered_kwh = sum(100.0 - v.amount for v in over) * 0.25 + (96 - len(over)) * 100 * 0.25
    assert covered_kwh == pytest.approx(delivered_kwh)


def test_a_battery_below_its_band_recovers_at_full_charge_power_and_says_so():
    small = battery(max_charge_kw=20.0)
    plan = solve(day(soc_pct=5.0, battery=small))
    step = 20 * 0.25 * 0.9**0.5 / 2  # percentage points a slot at full charge power
    assert plan.battery_power_kw[:3] == pytest.approx((-20.0,) * 3)
    below = [(v.slot, v.amount) for v in plan.violations if v.kind == "soc_below_min"]
    assert below == [(0, pytest.approx(5.0 - step)), (1, pytest.approx(5.0 - 2 * step))]
    assert plan.status == "feasible_with_violations"


def test_a_terminal_target_out_of_reach_is_approached_as_far_as_possible_and_reported():
    plan = solve(
        day(
            load_kw=(50.0,) * 4,
            import_price=(0.25,) * 4,
            export_price=(0.05,) * 4,
            soc_pct=30.0,
            terminal_soc_pct=80.0,
        )
    )
    gained = 4 * 100 * 0.25 * 0.9**0.5 / 2  # percentage points at full charge power
    assert plan.soc_pct[-1] == pytest.approx(30.0 + gained)
    assert [(v.kind, v.slot) for v in plan.violations] == [("terminal_soc", 3)]
    assert plan.violations[0].amount == pytest.approx(80.0 - 30.0 - gained)


def test_negative_prices_never_make_the_battery_charge_and_discharge_at_once():
    prices = tuple(-0.5 if t < 8 else 0.3 for t in range(16))
    plan = solve(
        day(
            load_kw=(0.0,) * 16,
            import_price=prices,
            export_price=prices,
            soc_pct=85.0,
            grid_export_limit_kw=0.0,
        )
    )
    soc = 85.0
    for power, reported in zip(plan.battery_power_kw, plan.soc_pct, strict=True):
        soc += (max(-power, 0) * 0.9**0.5 - max(power, 0) / 0.9**0.5) * 0.25 / 2
        assert reported == pytest.approx(soc, abs=1e-6)


def test_a_warm_solve_gives_the_same_plan_as_a_cold_one():
    prices = tuple(0.10 if t in NIGHT else 0.45 if t in EVENING else 0.25 for t in range(96))
    problem = day(import_price=prices, demand_charge_per_kw=2.0)
    clear_cache()
    cold = solve(problem, warm=False)
    # Leaves another basis and another efficiency in the cached model.
    solve(day(soc_pct=5.0, battery=battery(round_trip_efficiency=0.7)))
    warm = solve(problem)
    assert warm.cost == pytest.approx(cold.cost, abs=1e-6)
    assert warm.violations == cold.violations


def test_an_impossible_problem_is_refused_not_solved():
    with pytest.raises(ValueError, match="one per slot"):
        solve(day(import_price=(0.1,) * 95))
    with pytest.raises(ValueError, match="finite"):
        solve(day(soc_pct=float("nan")))


def test_the_last_resort_follows_the_net_power_and_stops_at_empty_and_full():
    """Should re-solving not settle which way a slot goes, the battery follows the net power:
    the SOC is what that power does, and the power stops where the battery is full or empty."""
    problem = day(load_kw=(0.0,) * 4, soc_pct=85.0)
    power, soc_kwh = _follow_net_power(problem, np.array([-100.0, -100.0, 100.0, 100.0]), 0.25)
    eta = 0.9**0.5
    # 170 kWh stored: 30 kWh of room takes 30 / (eta * 0.25) kW, the rest of the slot is idle.
    assert power[0] == pytest.approx(-100.0)
    assert power[1] == pytest.approx(-(200 - 170 - 100 * 0.25 * eta) / (eta * 0.25))
    assert soc_kwh[1] == pytest.approx(200.0)
    assert soc_kwh[3] == pytest.approx(200.0 - 2 * 100 * 0.25 / eta)
    empty = _follow_net_power(day(soc_pct=1.0), np.full(96, 100.0), 0.25)
    assert min(empty[1]) == pytest.approx(0.0)
    assert sum(empty[0]) * 0.25 / eta == pytest.approx(2.0)  # the 2 kWh there were, no more
