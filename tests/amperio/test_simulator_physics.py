"""The simulated ChargePost's physics: batteries, chargers with vehicle sessions, the grid meter."""

import pytest

from amperio.simulator.physics import (
    ALARM_CLAMPED,
    CHG_CHARGING,
    CHG_FINISHING,
    CHG_IDLE,
    CHG_PREPARING,
    BatteryUnit,
    ChargePostState,
    Charger,
    Vehicle,
)


def quiet_state(**kwargs) -> ChargePostState:
    """A unit with no random vehicle arrivals and a watchdog that never fires."""
    state = ChargePostState(mean_arrival_s=0, watchdog_timeout_s=1e9, **kwargs)
    return state


def test_charging_raises_soc_by_the_energy_stored_after_losses():
    state = quiet_state(batteries=[BatteryUnit(capacity_kwh=100, soc_pct=50, efficiency=0.95)])
    state.apply_write("bat1_power_setpoint_kw", -50)
    state.advance(1800)
    battery = state.batteries[0]
    assert battery.power_kw == -50
    assert battery.soc_pct == pytest.approx(50 + 25 * 0.95, abs=0.01)
    assert state.values()["bat1_state"] == 2  # charging


def test_discharging_lowers_soc_by_more_than_the_energy_delivered():
    state = quiet_state(batteries=[BatteryUnit(capacity_kwh=100, soc_pct=50, efficiency=0.95)])
    state.apply_write("bat1_power_setpoint_kw", 50)
    state.advance(1800)
    assert state.batteries[0].soc_pct == pytest.approx(50 - 25 / 0.95, abs=0.01)
    assert state.values()["bat1_state"] == 3  # discharging


def test_soc_stays_within_limits_as_allowed_power_tapers_to_zero():
    state = quiet_state(batteries=[BatteryUnit(capacity_kwh=100, soc_pct=20)])
    state.apply_write("bat1_power_setpoint_kw", 110)
    state.advance(3 * 3600)
    battery = state.batteries[0]
    assert 0 <= battery.soc_pct < 0.5
    assert battery.allowed_discharge_kw < 10
    assert battery.power_kw <= battery.allowed_discharge_kw
    state.apply_write("bat1_power_setpoint_kw", -110)
    state.advance(4 * 3600)
    assert 99.5 < battery.soc_pct <= 100
    assert battery.allowed_charge_kw < 10


def test_a_setpoint_beyond_the_allowed_power_is_clamped_and_flagged():
    state = quiet_state(batteries=[BatteryUnit(max_power_kw=110, soc_pct=50), BatteryUnit()])
    state.apply_write("bat1_power_setpoint_kw", -200)
    state.advance(1)
    values = state.values()
    assert values["bat1_power_kw"] == -110
    assert values["bat1_power_setpoint_kw"] == -200  # the register keeps what was written
    assert values["alarm_bits"] & ALARM_CLAMPED
    state.apply_write("bat1_power_setpoint_kw", -100)
    state.advance(1)
    assert state.values()["bat1_power_kw"] == -100
    assert not state.values()["alarm_bits"] & ALARM_CLAMPED


def test_a_setpoint_reverts_when_not_renewed_within_the_reversion_timeout():
    state = quiet_state()
    state.apply_write("bat1_setpoint_reversion_kw", 5)
    state.apply_write("bat1_setpoint_reversion_timeout_s", 30)
    state.apply_write("bat1_power_setpoint_kw", 60)
    state.advance(29)
    assert state.batteries[0].setpoint_kw == 60
    state.advance(2)
    assert state.batteries[0].setpoint_kw == 5
    assert state.batteries[0].power_kw == 5


def test_a_vehicle_session_prepares_ramps_holds_the_limit_tapers_finishes_and_leaves():
    charger = Charger(ramp_kw_per_s=25, prepare_s=10, linger_s=60)
    state = quiet_state(chargers=[charger])
    state.apply_write("chg1_power_limit_kw", 120)
    charger.plug_in(Vehicle(capacity_kwh=60, soc_pct=20, target_soc_pct=100, max_power_kw=150))
    assert state.values()["chg1_connector_state"] == 1
    assert charger.status == CHG_PREPARING
    state.advance(10)
    assert charger.status == CHG_CHARGING
    assert charger.power_kw == 25  # ramping at 25 kW/s, not jumping to the limit
    state.advance(1)
    assert charger.power_kw == 50
    powers, statuses = [], set()
    for _ in range(4 * 3600):
        state.advance(1)
        powers.append(charger.power_kw)
        statuses.add(charger.status)
        if charger.status == CHG_IDLE:
            break
    assert max(powers) == 120  # held at the limit, never above it
    assert 0 < min(p for p in powers if p > 0) < 20  # tapered near full
    assert CHG_FINISHING in statuses
    assert charger.status == CHG_IDLE and state.values()["chg1_connector_state"] == 0
    assert charger.session_energy_kwh == pytest.approx(60 * 0.8, rel=0.01)


def test_lowering_the_charger_limit_takes_effect_at_once():
    charger = Charger(prepare_s=0)
    state = quiet_state(chargers=[charger])
    charger.plug_in(Vehicle(capacity_kwh=100, soc_pct=10, max_power_kw=300))
    state.advance(60)
    assert charger.power_kw == 300
    state.apply_write("chg1_power_limit_kw", 40)
    state.advance(1)
    assert charger.power_kw == 40


def test_the_charger_falls_back_when_its_limit_is_not_renewed_within_its_timeout():
    state = quiet_state()
    state.apply_write("chg1_fallback_limit_kw", 22)
    state.apply_write("chg1_timeout_s", 120)
    state.apply_write("chg1_power_limit_kw", 150)
    state.advance(119)
    assert state.values()["chg1_power_limit_kw"] == 150
    state.advance(2)
    assert state.values()["chg1_power_limit_kw"] == 22


def test_the_grid_meter_sums_site_load_chargers_and_batteries():
    charger = Charger(prepare_s=0)
    state = quiet_state(chargers=[charger])
    charger.plug_in(Vehicle(capacity_kwh=100, soc_pct=10, max_power_kw=150))
    state.apply_write("chg1_power_limit_kw", 100)
    state.apply_write("bat1_power_setpoint_kw", 30)
    state.apply_write("bat2_power_setpoint_kw", 20)
    state.advance(30)
    v = state.values()
    expected = v["site_load_kw"] + v["chg1_power_kw"] - v["bat1_power_kw"] - v["bat2_power_kw"]
    assert v["chg1_power_kw"] == 100
    assert v["grid_import_kw"] == pytest.approx(expected)
    assert v["grid_export_kw"] == 0
    phases = v["grid_power_l1_kw"] + v["grid_power_l2_kw"] + v["grid_power_l3_kw"]
    assert phases == pytest.approx(expected)
    # Batteries discharging beyond the load export the rest.
    charger.unplug()
    state.apply_write("bat1_power_setpoint_kw", 110)
    state.apply_write("bat2_power_setpoint_kw", 110)
    state.advance(1)
    v = state.values()
    assert v["grid_import_kw"] == 0
    assert v["grid_export_kw"] == pytest.approx(220 - v["site_load_kw"])


def test_energy_counters_integrate_grid_power():
    state = quiet_state(base_load_kw=0, batteries=[BatteryUnit(capacity_kwh=500, soc_pct=90)])
    start = state.meter.export_energy_kwh
    state.apply_write("bat1_power_setpoint_kw", 100)
    state.advance(3600)
    # Site load is 0 +/- 0.5 kW noise: the export counter grows by about 100 kWh.
    assert state.meter.export_energy_kwh - start == pytest.approx(100, abs=1)


def test_vehicles_arrive_on_their_own_with_a_seeded_schedule():
    first, second = ChargePostState(seed=7), ChargePostState(seed=7)
    for state in (first, second):
        state.watchdog_timeout_s = 1e9
        state.advance(4 * 3600)
    assert first.chargers[0].session_energy_kwh > 0
    assert first.values()["chg1_session_energy_kwh"] == second.values()["chg1_session_energy_kwh"]
