"""The watchdog beats the real simulator only while the control loop is alive and the link works."""

from datetime import UTC, datetime, timedelta

import pytest

from amperio.enexa_link.configsync import with_defaults
from amperio.modbus.client import ChargePostClient
from amperio.state import GatewayState
from amperio.watchdog import beat
from shared.fields import format_timestamp

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
CONFIG = with_defaults(
    {"settings": {"watchdog": {"interval_s": 2, "timeout_s": 10}, "telemetry": {"interval_s": 2}}}
)


@pytest.fixture
def unit(tmp_path, start_sim):
    sim = start_sim(seed=1)
    client = ChargePostClient("127.0.0.1", sim.port, retries=0, timeout_s=1)
    state = GatewayState(tmp_path / "state.sqlite3")
    try:
        yield sim, client, state
    finally:
        client.close()


def control_loop_alive(state, at):
    state.update({"control_cycle_ok_at": format_timestamp(at), "modbus_link_up": True})


def test_while_the_control_loop_runs_the_heartbeat_changes_and_the_unit_stays_out_of_safe_state(
    unit,
):
    sim, client, state = unit
    for second in range(0, 40, 2):
        now = NOW + timedelta(seconds=second)
        control_loop_alive(state, now)
        assert beat(client, state, CONFIG, now)
        sim.step(2)
    assert sim.state.watchdog_timeout_s == 10  # the configured hardware timeout was written
    assert sim.state.heartbeat == 20
    assert not sim.state.safe
    assert state.get("watchdog_last_beat_at") == format_timestamp(NOW + timedelta(seconds=38))


def test_a_stale_control_loop_stops_the_heartbeat_and_the_unit_falls_back(unit):
    sim, client, state = unit
    control_loop_alive(state, NOW)
    assert beat(client, state, CONFIG, NOW)
    # The control loop hangs: no good cycle since NOW. Half the timeout (5 s) later the
    # heartbeat stops, and the unit falls back within its own timeout after that.
    beats = []
    for second in range(2, 20, 2):
        sim.step(2)
        beats.append(beat(client, state, CONFIG, NOW + timedelta(seconds=second)))
    assert beats == [True, True] + [False] * 7
    assert sim.state.safe
    assert state.get("watchdog_beating") is False
    assert "stale" in state.get("watchdog_withheld")


def test_no_heartbeat_while_the_modbus_link_is_down(unit):
    sim, client, state = unit
    control_loop_alive(state, NOW)
    state.set("modbus_link_up", False)
    assert not beat(client, state, CONFIG, NOW)
    assert sim.state.heartbeat == 0
    assert state.get("watchdog_withheld") == "Modbus link down"


def test_no_heartbeat_before_any_control_cycle(unit):
    sim, client, state = unit
    assert not beat(client, state, CONFIG, NOW)
    assert sim.state.heartbeat == 0


def test_after_the_gateway_lost_its_state_the_first_beat_still_changes_the_heartbeat(unit):
    sim, client, state = unit
    with sim.state.lock:
        sim.state.heartbeat = 1  # what a gateway before a state reset left in the unit
    control_loop_alive(state, NOW)  # a fresh state: the counter starts over at 1
    assert beat(client, state, CONFIG, NOW)
    assert sim.state.heartbeat == 2  # an unchanged value would not count as a heartbeat
    assert state.get("watchdog_counter") == 2
