"""The simulator watchdog: fallback when the heartbeat stops, recovery on both signals."""

import pytest

from amperio.modbus.client import ChargePostClient
from amperio.simulator.physics import ALARM_WATCHDOG, MODE_AUTO, MODE_SAFE


@pytest.fixture
def sim(start_sim):
    return start_sim(no_arrivals=True)


@pytest.fixture
def client(sim):
    with ChargePostClient("127.0.0.1", sim.port, timeout_s=1.0) as c:
        c.write_many(
            {
                "watchdog_timeout_s": 30,
                "chg1_fallback_limit_kw": 22,
                "chg1_power_limit_kw": 150,
                "bat1_power_setpoint_kw": 40,
                "bat2_power_setpoint_kw": -40,
                "watchdog_heartbeat": 1,
            }
        )
        yield c


SAFE_VIEW = [
    "alarm_bits",
    "operating_mode",
    "bat1_power_setpoint_kw",
    "bat2_power_setpoint_kw",
    "chg1_power_limit_kw",
]


def test_heartbeats_within_the_timeout_keep_the_setpoints(sim, client):
    for beat in range(2, 6):
        sim.step(20)
        client.write("watchdog_heartbeat", beat)
    values = client.read(SAFE_VIEW + ["bat1_power_kw"])
    assert values["alarm_bits"] & ALARM_WATCHDOG == 0
    assert values["operating_mode"] == MODE_AUTO
    assert values["bat1_power_kw"] == 40


def test_a_missed_heartbeat_puts_the_unit_in_its_safe_state(sim, client):
    sim.step(31)
    values = client.read(SAFE_VIEW + ["bat1_power_kw", "bat2_power_kw"])
    assert values["alarm_bits"] & ALARM_WATCHDOG
    assert values["operating_mode"] == MODE_SAFE
    assert values["bat1_power_setpoint_kw"] == 0
    assert values["bat2_power_setpoint_kw"] == 0
    assert values["bat1_power_kw"] == 0 and values["bat2_power_kw"] == 0
    assert values["chg1_power_limit_kw"] == 22


def test_a_heartbeat_alone_does_not_end_the_safe_state(sim, client):
    sim.step(31)
    client.write("watchdog_heartbeat", 2)
    sim.step(1)
    assert client.read(["operating_mode"]) == {"operating_mode": MODE_SAFE}


def test_a_setpoint_alone_does_not_end_the_safe_state(sim, client):
    sim.step(31)
    client.write("bat1_power_setpoint_kw", 30)
    sim.step(1)
    values = client.read(["operating_mode", "bat1_power_kw"])
    assert values == {"operating_mode": MODE_SAFE, "bat1_power_kw": 0.0}


def test_a_fresh_heartbeat_and_a_new_setpoint_end_the_safe_state(sim, client):
    sim.step(31)
    client.write("watchdog_heartbeat", 2)
    client.write("bat1_power_setpoint_kw", 30)
    sim.step(1)
    values = client.read(SAFE_VIEW + ["bat1_power_kw"])
    assert values["alarm_bits"] & ALARM_WATCHDOG == 0
    assert values["operating_mode"] == MODE_AUTO
    assert values["bat1_power_kw"] == 30


def test_a_heartbeat_that_never_changes_lets_the_unit_fall_back(sim, client):
    # The map asks for a changing value: a controller that keeps writing the same one is stuck.
    for _ in range(4):
        sim.step(20)
        client.write("watchdog_heartbeat", 1)
    values = client.read(SAFE_VIEW)
    assert values["alarm_bits"] & ALARM_WATCHDOG
    assert values["operating_mode"] == MODE_SAFE
    assert values["bat1_power_setpoint_kw"] == 0


def test_a_repeated_heartbeat_value_does_not_end_the_safe_state(sim, client):
    sim.step(31)
    client.write("watchdog_heartbeat", 1)  # the value it already holds: not a fresh heartbeat
    client.write("bat1_power_setpoint_kw", 30)
    sim.step(1)
    assert client.read(["operating_mode"]) == {"operating_mode": MODE_SAFE}
