"""Dispatch commands on the gateway, written to a real simulated ChargePost over Modbus/TCP."""

from datetime import UTC, datetime, timedelta

import pytest

from amperio.dispatch.errors import CommandConflict, CommandError, LimitsUnknown, UnknownCommand
from amperio.dispatch.limits import validity_end
from amperio.dispatch.store import CommandStore
from amperio.modbus.client import ChargePostClient
from shared.errors import SchemaError
from tests.amperio.limits import LIMITS

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
CONFIG = {"version": 1, "settings": {"setpoint_validity_s": 300}, "limits": LIMITS}
BATTERY_SETPOINTS = {"bat1_power_setpoint_kw", "bat2_power_setpoint_kw"}


def command(command_id="cmd-1", name="set_battery_power", params=None, **extra):
    return {
        "site_id": "SITE001",
        "command": name,
        "params": {"power_kw": -25} if params is None else params,
        "timestamp": "2026-01-15T10:00:00Z",
        "command_id": command_id,
        **extra,
    }


@pytest.fixture
def sim(start_sim):
    return start_sim(watchdog_timeout_s=100_000)  # no heartbeat in these tests


@pytest.fixture
def client(sim):
    c = ChargePostClient("127.0.0.1", sim.port, timeout_s=2)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def store(tmp_path):
    s = CommandStore(tmp_path / "commands.sqlite3")
    try:
        yield s
    finally:
        s.close()


def setpoints(sim):
    with sim.state.lock:
        return [b.setpoint_kw for b in sim.state.batteries]


def test_a_battery_setpoint_is_split_over_the_units_written_and_read_back(sim, client, store):
    store.submit(command(), LIMITS, T0)
    record = store.execute("cmd-1", client, CONFIG, T0 + timedelta(seconds=1))
    assert record.status == "applied"
    assert setpoints(sim) == [-12.5, -12.5]
    assert record.registers["bat1_power_setpoint_kw"] == -12.5
    assert record.registers["bat2_power_setpoint_kw"] == -12.5
    # the hardware reverts on its own if the gateway dies
    assert record.registers["bat1_setpoint_reversion_kw"] == 0
    assert record.registers["bat1_setpoint_reversion_timeout_s"] > 0
    assert record.lease_until == T0 + timedelta(seconds=300)


def test_the_split_follows_what_each_unit_allows_now(sim, client, store):
    with sim.state.lock:
        sim.state.batteries[1].soc_pct = 97.5  # nearly full: BAT2 may charge only 55 kW
    store.submit(command(params={"power_kw": -30}), LIMITS, T0)
    assert store.execute("cmd-1", client, CONFIG, T0).status == "applied"
    assert setpoints(sim) == [-20.0, -10.0]


def test_the_same_dispatch_twice_is_stored_and_applied_once(sim, client, store):
    first, created = store.submit(command(), LIMITS, T0)
    again, created_again = store.submit(command(), LIMITS, T0 + timedelta(seconds=2))
    assert (created, created_again) == (True, False)
    assert again.command_id == first.command_id
    store.execute("cmd-1", client, CONFIG, T0)
    with sim.state.lock:
        sim.state.batteries[0].setpoint_kw = 7.0  # changed since: a second run would undo it
    record = store.execute("cmd-1", client, CONFIG, T0)
    assert record.status == "applied"
    assert record.attempts == 1
    assert setpoints(sim)[0] == 7.0


def test_a_reused_command_id_with_another_payload_is_refused(store):
    store.submit(command(), LIMITS, T0)
    with pytest.raises(CommandConflict):
        store.submit(command(params={"power_kw": 50}), LIMITS, T0)
    assert store.get("cmd-1").params == {"power_kw": -25.0}


def test_a_setpoint_beyond_the_battery_limit_is_refused_naming_the_limit(sim, client, store):
    with pytest.raises(CommandError) as refused:
        store.submit(command(params={"power_kw": -250}), LIMITS, T0)
    assert "220 kW" in refused.value.detail
    assert "params.power_kw" in refused.value.errors
    assert store.get("cmd-1").status == "rejected"
    # nothing was queued, so nothing reaches the unit even if a task ran for it
    assert store.execute("cmd-1", client, CONFIG, T0).status == "rejected"
    assert setpoints(sim) == [0.0, 0.0]


def test_an_unknown_charger_and_a_limit_above_its_maximum_are_refused(store):
    with pytest.raises(CommandError) as unknown:
        store.submit(
            command(name="set_charger_power_limit", params={"charger_id": "CHG9", "limit_kw": 50}),
            LIMITS,
            T0,
        )
    assert "CHG1" in unknown.value.errors["params.charger_id"][0]
    with pytest.raises(CommandError) as too_high:
        store.submit(
            command(
                "cmd-2",
                name="set_charger_power_limit",
                params={"charger_id": "CHG1", "limit_kw": 350},
            ),
            LIMITS,
            T0,
        )
    assert "300 kW" in too_high.value.detail


def test_a_command_is_refused_while_no_configuration_gives_the_limits(store):
    with pytest.raises(LimitsUnknown):
        store.submit(command(), {}, T0)


def test_a_command_executed_after_valid_until_expires_without_a_register_write(sim, client, store):
    store.submit(command(valid_until="2026-01-15T10:00:05Z"), LIMITS, T0)
    # the task ran late: accepted on time, but the write would come after valid_until
    record = store.execute("cmd-1", client, CONFIG, T0 + timedelta(seconds=6))
    assert record.status == "expired"
    assert "not applied late" in record.detail
    assert setpoints(sim) == [0.0, 0.0]


def test_a_command_arriving_after_valid_until_is_stored_expired_and_never_queued(store):
    record, created = store.submit(
        command(valid_until="2026-01-15T10:00:05Z"), LIMITS, T0 + timedelta(seconds=10)
    )
    assert created and record.status == "expired"
    assert store.open_commands() == []


def test_a_lease_is_reasserted_after_the_unit_reverts_the_setpoint(sim, client, store):
    config = {**CONFIG, "settings": {"setpoint_validity_s": 300, "setpoint_reversion_timeout_s": 5}}
    store.submit(command(), LIMITS, T0)
    store.execute("cmd-1", client, config, T0)
    sim.step(6)  # no write for longer than the reversion timeout: the unit reverts to 0
    assert setpoints(sim) == [0.0, 0.0]
    results = store.reassert_leases(client, T0 + timedelta(seconds=6), config)
    assert {r["action"] for r in results} == {"corrected"}
    assert setpoints(sim) == [-12.5, -12.5]
    again = store.reassert_leases(client, T0 + timedelta(seconds=8), config)
    assert {r["action"] for r in again} == {"reasserted"}


def lease_battery_and_charger(store, client) -> None:
    """Two live leases: the battery setpoint (cmd-1) and an 80 kW limit on CHG1 (cmd-2)."""
    store.submit(command(), LIMITS, T0)
    store.execute("cmd-1", client, CONFIG, T0)
    store.submit(
        command("cmd-2", "set_charger_power_limit", {"charger_id": "CHG1", "limit_kw": 80}),
        LIMITS,
        T0,
    )
    store.execute("cmd-2", client, CONFIG, T0)


def test_while_autonomy_holds_the_battery_a_lease_leaves_it_and_keeps_the_rest(sim, client, store):
    lease_battery_and_charger(store, client)
    with sim.state.lock:  # what autonomy wrote this cycle, and a charger limit the unit lost
        for battery in sim.state.batteries:
            battery.setpoint_kw = 40.0
        sim.state.chargers[0].power_limit_kw = 300.0
    results = store.reassert_leases(
        client, T0 + timedelta(seconds=2), CONFIG, held_elsewhere=BATTERY_SETPOINTS
    )
    assert setpoints(sim) == [40.0, 40.0]
    assert [r["register"] for r in results] == ["chg1_power_limit_kw"]
    with sim.state.lock:
        assert sim.state.chargers[0].power_limit_kw == 80.0


def test_a_charger_limit_autonomy_caps_is_left_to_it_while_the_battery_lease_holds(
    sim, client, store
):
    lease_battery_and_charger(store, client)
    with sim.state.lock:  # autonomy's cap of this cycle
        sim.state.chargers[0].power_limit_kw = 45.0
    results = store.reassert_leases(
        client, T0 + timedelta(seconds=2), CONFIG, held_elsewhere={"chg1_power_limit_kw"}
    )
    assert "chg1_power_limit_kw" not in [r["register"] for r in results]
    assert setpoints(sim) == [-12.5, -12.5]
    with sim.state.lock:
        assert sim.state.chargers[0].power_limit_kw == 45.0
    assert [lease["register"] for lease in store.leases()].count("chg1_power_limit_kw") == 1


def test_an_ended_battery_lease_leaves_the_setpoint_autonomy_writes_and_is_released(
    sim, client, store
):
    store.submit(command(valid_until="2026-01-15T10:01:00Z"), LIMITS, T0)
    store.execute("cmd-1", client, CONFIG, T0)
    with sim.state.lock:  # what autonomy wrote this cycle
        for battery in sim.state.batteries:
            battery.setpoint_kw = 40.0
    results = store.reassert_leases(
        client, T0 + timedelta(seconds=61), CONFIG, held_elsewhere=BATTERY_SETPOINTS
    )
    assert {r["action"] for r in results} == {"released"}
    assert setpoints(sim) == [40.0, 40.0]
    assert store.leases() == []


def test_a_lost_setpoint_after_a_reconnect_is_written_again(sim, client, store):
    store.submit(
        command(name="set_charger_power_limit", params={"charger_id": "CHG1", "limit_kw": 80}),
        LIMITS,
        T0,
    )
    store.execute("cmd-1", client, CONFIG, T0)
    with sim.state.lock:
        sim.state.chargers[0].power_limit_kw = 300.0  # the unit restarted with its default
    sim.faults.drop_connections()
    store.reassert_leases(client, T0 + timedelta(seconds=10), CONFIG)
    with sim.state.lock:
        assert sim.state.chargers[0].power_limit_kw == 80.0


def test_when_the_lease_ends_the_units_return_to_their_defaults(sim, client, store):
    store.submit(command(valid_until="2026-01-15T10:01:00Z"), LIMITS, T0)
    store.submit(
        command(
            "cmd-2",
            name="set_grid_limit",
            params={"limit_kw": 150},
            valid_until="2026-01-15T10:01:00Z",
        ),
        LIMITS,
        T0,
    )
    store.execute("cmd-1", client, CONFIG, T0)
    store.execute("cmd-2", client, CONFIG, T0)
    with sim.state.lock:
        assert sim.state.site_grid_limit_kw == 150.0
    results = store.reassert_leases(client, T0 + timedelta(seconds=61), CONFIG)
    assert {r["action"] for r in results} == {"released"}
    assert setpoints(sim) == [0.0, 0.0]
    with sim.state.lock:
        assert sim.state.site_grid_limit_kw == 400.0  # back to the configured grid limit
    assert store.leases() == []


def test_a_command_whose_task_was_lost_is_run_by_recovery(sim, client, store):
    store.submit(command(), LIMITS, T0)
    store.submit(command("cmd-old", valid_until="2026-01-15T10:00:20Z"), LIMITS, T0)
    # no task ran: a worker was killed with both on its queue
    assert store.recover_lost(T0 + timedelta(seconds=5), client=client, config=CONFIG) == []
    recovered = store.recover_lost(T0 + timedelta(seconds=40), client=client, config=CONFIG)
    assert {r.command_id: r.status for r in recovered} == {
        "cmd-1": "applied",
        "cmd-old": "expired",
    }
    assert setpoints(sim) == [-12.5, -12.5]


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_a_command_dated_at_either_end_of_the_calendar_is_refused_before_it_is_stored(
    store, timestamp
):
    # Past the shared parser's range, so no lease end or stored timestamp can overflow.
    with pytest.raises(SchemaError) as refused:
        store.submit(command("cmd-far", timestamp=timestamp), LIMITS, T0)
    assert "timestamp" in refused.value.errors
    with pytest.raises(UnknownCommand):
        store.get("cmd-far")


def test_a_lease_that_would_end_past_the_calendar_is_a_command_error_not_an_overflow():
    # Defence in depth for a row stored before the parser bounded timestamps.
    with pytest.raises(CommandError, match="end of the calendar"):
        validity_end(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), None, CONFIG)


def test_recovery_goes_on_past_a_record_that_raises(sim, client, store, monkeypatch):
    store.submit(command("cmd-bad"), LIMITS, T0)
    store.submit(command("cmd-1"), LIMITS, T0 + timedelta(seconds=1))
    run = store.execute

    def execute(command_id, *args, **kwargs):
        if command_id == "cmd-bad":
            raise RuntimeError("something no one foresaw")
        return run(command_id, *args, **kwargs)

    monkeypatch.setattr(store, "execute", execute)
    recovered = store.recover_lost(T0 + timedelta(seconds=40), client=client, config=CONFIG)
    assert {r.command_id: r.status for r in recovered} == {"cmd-bad": "failed", "cmd-1": "applied"}
    assert "something no one foresaw" in store.get("cmd-bad").detail


class ChokingClient:
    """A register client that fails in a way the store does not expect (not a ModbusError)."""

    def read(self, names):
        raise ValueError("decoder choked")

    def write_many(self, values, read_back=True):
        raise ValueError("decoder choked")


def test_a_command_that_cannot_be_executed_is_failed_with_the_reason_not_left_queued(store):
    store.submit(command(), LIMITS, T0)
    record = store.execute("cmd-1", ChokingClient(), CONFIG, T0)
    assert record.status == "failed"
    assert "decoder choked" in record.detail
    assert store.get("cmd-1").to_dict()["detail"] == record.detail  # what GET /v1/dispatch shows
    assert store.health(T0)["last_failure"]["command_id"] == "cmd-1"


def test_health_counts_failed_commands_and_those_recovery_cannot_finish(store):
    store.submit(command("cmd-failed"), LIMITS, T0)
    store.execute("cmd-failed", ChokingClient(), CONFIG, T0 + timedelta(seconds=1))
    store.submit(command("cmd-waiting"), LIMITS, T0 + timedelta(seconds=2))
    assert store.health(T0 + timedelta(seconds=5)) == {
        "queued": 1,
        "stuck": 0,
        "failed": 1,
        "last_failure": {"command_id": "cmd-failed", "at": "2026-01-15T10:00:01Z"},
    }
    # no recovery finished it in minutes: something keeps it from running
    assert store.health(T0 + timedelta(minutes=5))["stuck"] == 1


def test_a_schedule_drives_the_battery_slot_by_slot(sim, client, store):
    slots = [
        {"start": "2026-01-15T10:00:00Z", "end": "2026-01-15T10:15:00Z", "power_kw": 40},
        {"start": "2026-01-15T10:15:00Z", "end": "2026-01-15T10:30:00Z", "power_kw": -20},
    ]
    store.submit(command(name="apply_schedule", params={"slots": slots}), LIMITS, T0)
    assert store.execute("cmd-1", client, CONFIG, T0).status == "applied"
    assert setpoints(sim) == [20.0, 20.0]
    active = store.active_schedule(T0)
    assert [(s["power_kw"], s["command_id"]) for s in active] == [(40, "cmd-1"), (-20, "cmd-1")]
    store.reassert_leases(client, T0 + timedelta(minutes=16), CONFIG)
    assert setpoints(sim) == [-10.0, -10.0]
    assert len(store.active_schedule(T0 + timedelta(minutes=16))) == 1
    assert store.active_schedule(T0 + timedelta(minutes=31)) == []


def test_a_later_idle_schedule_ends_the_running_one_at_once_where_a_setpoint_only_pauses_it(
    sim, client, store
):
    # What Enexa sends when an operator releases a site from its plan (DELETE .../plan): one
    # 0 kW slot from a plan slot before the release to the released plan's end.
    slots = [
        {"start": "2026-01-15T10:00:00Z", "end": "2026-01-15T10:15:00Z", "power_kw": 40},
        {"start": "2026-01-15T10:15:00Z", "end": "2026-01-15T10:30:00Z", "power_kw": -20},
    ]
    store.submit(command(name="apply_schedule", params={"slots": slots}), LIMITS, T0)
    store.execute("cmd-1", client, CONFIG, T0)
    # A setpoint of 0 holds only while its lease lasts: then the schedule takes over again.
    store.submit(command("cmd-2", params={"power_kw": 0}), LIMITS, T0)
    store.execute("cmd-2", client, CONFIG, T0 + timedelta(minutes=1))
    assert setpoints(sim) == [0.0, 0.0]
    store.reassert_leases(client, T0 + timedelta(minutes=16), CONFIG)  # the lease ended at 10:05
    assert setpoints(sim) == [-10.0, -10.0]
    # An idle schedule replaces the running slot's setpoints as it is applied, and the old
    # schedule never comes back.
    idle = [{"start": "2026-01-15T10:01:00Z", "end": "2026-01-15T10:30:00Z", "power_kw": 0}]
    release = command(
        "cmd-3",
        name="apply_schedule",
        params={"slots": idle},
        timestamp="2026-01-15T10:16:00Z",
        valid_until="2026-01-15T10:30:00Z",
    )
    store.submit(release, LIMITS, T0 + timedelta(minutes=16))
    assert store.execute("cmd-3", client, CONFIG, T0 + timedelta(minutes=16)).status == "applied"
    assert setpoints(sim) == [0.0, 0.0]
    store.reassert_leases(client, T0 + timedelta(minutes=20), CONFIG)
    assert setpoints(sim) == [0.0, 0.0]
    assert [s["command_id"] for s in store.active_schedule(T0 + timedelta(minutes=20))] == ["cmd-3"]
    assert store.active_schedule(T0 + timedelta(minutes=31)) == []


def test_safe_mode_stops_the_batteries_and_refuses_setpoints(sim, client, store):
    store.submit(command(), LIMITS, T0)
    store.execute("cmd-1", client, CONFIG, T0)
    store.submit(command("cmd-2", name="set_mode", params={"mode": "safe"}), LIMITS, T0)
    assert store.execute("cmd-2", client, CONFIG, T0).status == "applied"
    assert setpoints(sim) == [0.0, 0.0]
    assert store.leases() == []
    store.submit(command("cmd-3"), LIMITS, T0)
    assert store.execute("cmd-3", client, CONFIG, T0).status == "rejected"


def test_a_unit_that_does_not_answer_fails_the_command_with_the_reason(sim, store):
    dead = ChargePostClient("127.0.0.1", sim.port, timeout_s=0.5, retries=0)
    sim.stop()
    try:
        store.submit(command(), LIMITS, T0)
        record = store.execute("cmd-1", dead, CONFIG, T0)
    finally:
        dead.close()
    assert record.status == "failed"
    assert record.detail
