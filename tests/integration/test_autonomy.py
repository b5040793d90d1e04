"""Local autonomous mode with both sides running: Enexa goes away while a 300 kW session runs
over a tight grid limit; the gateway takes the battery (or, with the battery at its minimum,
caps the charger), the simulator's grid import stays under the limit, and the gateway hands
back when Enexa returns. Mode changes reach Enexa as events."""

import time
from datetime import UTC, datetime

import pytest

from amperio.simulator.physics import Vehicle
from shared.fields import format_timestamp
from tests.integration.system import FAST, SITE, System, set_site_config, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GRID_LIMIT_KW = 200.0


def autonomy(system: System) -> str:
    return system.amperio_health()["sites"][SITE]["autonomy"]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """One system for both cases (each start costs Enexa, a provisioning and four gateway
    processes); each test sets up the ChargePost's batteries and its vehicle itself."""
    sys_ = System(tmp_path_factory.mktemp("autonomy"))
    sys_.before_provisioning = lambda: set_site_config(
        sys_,
        {
            **FAST,
            # The hardware's own fallback is not what these tests are about: a control cycle
            # that runs late on a loaded machine (parallel test workers) must not drop the unit
            # into its safe state (charger capped at 50 kW, battery at 0) in their middle.
            "watchdog": {"interval_s": 2, "timeout_s": 30},
            "grid": {"limit_kw": GRID_LIMIT_KW},
            "autonomy": {"enter_after_s": 5, "margin_kw": 30},
            # At the minimum with no reserve to charge towards, the battery cannot help; a
            # charged battery (50 %) is far above both either way.
            "battery": {"soc_min_pct": 10, "reserve_pct": 10},
        },
    )
    with sys_:
        wait_until(sys_.latest_reading, 60, 0.5, what="first reading")
        with sys_.simulator.state.lock:
            sys_.simulator.state.mean_arrival_s = 0  # no random vehicles: only the tests'
        yield sys_


@pytest.mark.parametrize("battery", ["charged", "at_its_minimum"])
def test_autonomous_mode_keeps_the_grid_limit_while_enexa_is_away_and_hands_back(
    system, figures, battery
):
    empty = battery == "at_its_minimum"
    wait_until(lambda: autonomy(system) == "normal", 60, 0.5, what="normal mode to start from")
    system.leave_safe_state()
    started_at = format_timestamp(datetime.now(UTC))
    with system.simulator.state.lock:
        for unit in system.simulator.state.batteries:
            unit.soc_pct = 10.0 if empty else 50.0  # 50 %: a fresh unit's charge
        charger = system.simulator.state.chargers[0]
        charger.auto_leave = False
        charger.power_limit_kw = charger.max_power_kw  # whatever limit an earlier test left
        # The vehicle's session starts at full power: the simulated preparation (10 s) and
        # ramp (12 s) only delay what the test is about.
        charger.prepare_s, charger.ramp_kw_per_s = 0.0, 1000.0
        charger.plug_in(Vehicle(capacity_kwh=400, soc_pct=10, max_power_kw=300))

    def drawn_from_the_grid() -> float | None:
        # The new session at full power, as the meter shows it: right after plug_in the
        # charger may still show the previous case's vehicle at 300 kW while the new session
        # ramps up within the physics tick.
        values = system.simulator_values()
        full = values["chg1_power_kw"] >= 290 and values["grid_import_kw"] > GRID_LIMIT_KW
        return values["grid_import_kw"] if full else None

    import_normal = wait_until(drawn_from_the_grid, 120, 0.5, what="full power from the grid")
    system.enexa.stop()
    try:
        wait_until(lambda: autonomy(system) == "safe_local", 60, 0.5, what="safe_local")
        # The setpoint is written in the cycle that enters the mode; the simulator's meter
        # shows it from its next physics tick (up to a second later).
        time.sleep(1.5)
        imports = []
        for _ in range(30):  # 15 s of samples while the gateway is in charge
            time.sleep(0.5)
            imports.append(system.simulator_values()["grid_import_kw"])
        discharge = sum(system.simulator_values()[f"bat{n}_power_kw"] for n in (1, 2))
        charger_cap = system.simulator_values()["chg1_power_limit_kw"]
    finally:
        system.enexa.start()
    wait_until(lambda: autonomy(system) == "normal", 60, 0.5, what="back to normal")
    wait_until(
        lambda: system.simulator_values()["chg1_power_limit_kw"] == 300,
        30,
        0.5,
        what="the charger's limit given back",
    )

    def mode_changes():
        response = system.enexa_api(
            "GET",
            f"/v1/sites/{SITE}/events",
            params={"kind": "mode_change", "from": started_at},
        )
        found = response.json()["events"]
        return found if len(found) >= 2 else None

    events = wait_until(mode_changes, 60, 0.5, what="both mode changes in Enexa")
    modes = sorted((e["data"]["from"], e["data"]["mode"]) for e in events)
    figures.update(
        {
            "battery": battery,
            "charger_cap_in_autonomy_kw": charger_cap,
            "grid_limit_kw": GRID_LIMIT_KW,
            "import_before_kw": round(import_normal, 1),
            "max_import_in_autonomy_kw": round(max(imports), 1),
            "battery_kw_in_autonomy": round(discharge, 1),
            "mode_changes": modes,
        }
    )
    assert import_normal > GRID_LIMIT_KW  # the situation really needed the gateway
    assert max(imports) <= GRID_LIMIT_KW, imports
    if empty:
        assert discharge == 0 and charger_cap < 300  # the charger gave way, not the battery
    else:
        assert discharge > 0 and charger_cap == 300
    assert modes == [("normal", "safe_local"), ("safe_local", "normal")]
