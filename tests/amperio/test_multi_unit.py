"""A site of several ChargePosts: one reading of all their units, each command on its unit."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from amperio import gateway
from amperio.enexa_link.configsync import validate_config, write_config
from amperio.settings import load
from tests.amperio.limits import LIMITS

# Two ChargePosts: four battery units and two chargers, as Enexa's registry would list them;
# and a CHG3 the registry lists but no configured ChargePost holds (a registry out of step).
TWO_UNIT_LIMITS = {
    **LIMITS,
    "battery": {
        **LIMITS["battery"],
        "max_charge_kw": 440,
        "max_discharge_kw": 440,
        "units": {f"BAT{n}": {"max_charge_kw": 110, "max_discharge_kw": 110} for n in range(1, 5)},
    },
    "chargers": {f"CHG{n}": {"max_power_kw": 300} for n in (1, 2, 3)},
}


@pytest.fixture
def sims(start_sim):
    return [start_sim(seed=n, watchdog_timeout_s=100_000, no_arrivals=True) for n in (1, 2)]


@pytest.fixture
def gw(tmp_path, sims):
    settings = replace(load(), state_dir=tmp_path, key_file=tmp_path / "api_key")
    units = [{"host": "127.0.0.1", "port": sim.port} for sim in sims]
    config = {"version": 1, "settings": {"modbus": units}, "limits": TWO_UNIT_LIMITS}
    write_config(settings.config_path, validate_config(config))
    gw = gateway.Gateway(settings)
    try:
        yield gw
    finally:
        for client in gw.chargeposts(gw.config()):
            client.close()


def run(gw, command_id, name, params):
    now = datetime.now(UTC)
    gw.commands().submit(
        {
            "site_id": "SITE001",
            "command": name,
            "params": params,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "command_id": command_id,
        },
        TWO_UNIT_LIMITS,
        now,
    )
    return gateway.apply_command(command_id, gw)


def test_the_control_cycle_reads_every_chargepost_into_one_reading(gw, sims):
    result = gateway.run_control_cycle(gw, datetime.now(UTC))
    assert result["read"]
    [item] = gw.outbox().next_batch("reading", 10)
    reading = item.payload
    assert [u["id"] for u in reading["battery"]["units"]] == ["BAT1", "BAT2", "BAT3", "BAT4"]
    assert [c["id"] for c in reading["chargers"]] == ["CHG1", "CHG2"]
    # The site's grid limit is shared out: each ChargePost keeps its own import below half.
    assert [sim.state.site_grid_limit_kw for sim in sims] == [200.0, 200.0]


def test_a_charger_limit_for_the_second_chargepost_writes_only_that_one(gw, sims):
    record = run(gw, "cmd-chg2", "set_charger_power_limit", {"charger_id": "CHG2", "limit_kw": 42})
    assert record.status == "applied", record.detail
    assert record.registers["chg2_power_limit_kw"] == 42
    assert sims[1].state.chargers[0].power_limit_kw == 42
    assert sims[0].state.chargers[0].power_limit_kw == 300.0


def test_a_site_battery_setpoint_is_spread_over_the_batteries_of_every_chargepost(gw, sims):
    record = run(gw, "cmd-bat", "set_battery_power", {"power_kw": -40})
    assert record.status == "applied", record.detail
    setpoints = [b.setpoint_kw for sim in sims for b in sim.state.batteries]
    assert setpoints == [-10.0, -10.0, -10.0, -10.0]
    assert sum(record.registers[f"bat{n}_power_setpoint_kw"] for n in range(1, 5)) == -40


def test_a_command_naming_a_unit_no_chargepost_holds_writes_nothing(gw, sims):
    record = run(gw, "cmd-chg3", "set_charger_power_limit", {"charger_id": "CHG3", "limit_kw": 42})
    assert record.status == "rejected"
    assert [sim.state.chargers[0].power_limit_kw for sim in sims] == [300.0, 300.0]
