"""A site of several ChargePosts: one reading of all their units, each command on its unit."""

import threading
from datetime import UTC, datetime

from amperio import gateway
from amperio.chargeposts import SiteClient
from tests.amperio.limits import TWO_UNIT_LIMITS


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


def test_a_command_applied_while_a_cycle_reasserts_the_leases_is_not_written_over(
    gw, sims, monkeypatch
):
    """The control cycle re-writes the leases it read; a command written in between must not
    have its new setpoint put back to the old lease's value (gateway.setpoints_lock)."""
    assert run(gw, "cmd-old", "set_battery_power", {"power_kw": -40}).status == "applied"
    reasserting, release = threading.Event(), threading.Event()
    real_write_many = SiteClient.write_many

    def write_many(self, values, *args, **kwargs):
        if threading.current_thread().name == "cycle" and not reasserting.is_set():
            reasserting.set()  # the cycle has read the leases and is about to write them
            release.wait(5)
        return real_write_many(self, values, *args, **kwargs)

    monkeypatch.setattr(SiteClient, "write_many", write_many)
    cycle = threading.Thread(
        target=gateway.run_control_cycle, args=(gw, datetime.now(UTC)), name="cycle"
    )
    cycle.start()
    assert reasserting.wait(5)
    applied = []
    command = threading.Thread(
        target=lambda: applied.append(run(gw, "cmd-new", "set_battery_power", {"power_kw": -80}))
    )
    command.start()
    command.join(0.5)  # the command waits for the cycle's writes instead of racing them
    release.set()
    cycle.join(5)
    command.join(5)
    assert applied[0].status == "applied", applied[0].detail
    assert [b.setpoint_kw for sim in sims for b in sim.state.batteries] == [-20.0] * 4
    assert {lease["command_id"] for lease in gw.commands().leases()} == {"cmd-new"}
