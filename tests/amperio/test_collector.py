"""The control cycle's reading, from the real ChargePost simulator into the outbox."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from amperio.collector import collect
from amperio.gateway import Gateway, run_control_cycle
from amperio.modbus.client import ChargePostClient
from amperio.outbox import Outbox
from amperio.settings import load
from amperio.simulator import ChargePostSimulator
from amperio.state import GatewayState
from shared.events import Event
from shared.telemetry import TelemetryReading

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def simulator():
    sim = ChargePostSimulator(port=0, speed=0, seed=1).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def gateway(tmp_path, simulator, monkeypatch):
    monkeypatch.setenv("AMPERIO_MODBUS_PORT", str(simulator.port))
    settings = replace(load(), state_dir=tmp_path, modbus_port=simulator.port)
    client = ChargePostClient("127.0.0.1", simulator.port, retries=0, timeout_s=1)
    try:
        yield settings, GatewayState(settings.state_path), Outbox(settings.outbox_path), client
    finally:
        client.close()


def queued(box, kind):
    return [item.payload for item in box.next_batch(kind, 100)]


def test_a_snapshot_becomes_one_valid_shared_reading_in_the_outbox(gateway, simulator):
    settings, state, box, client = gateway
    reading = collect(settings, state, box, [client], NOW)
    assert reading is not None
    parsed = TelemetryReading.from_dict(reading, now=NOW)
    assert parsed.site_id == settings.site_id and parsed.message_id
    assert [u.id for u in parsed.battery.units] == ["BAT1", "BAT2"]
    assert [c.id for c in parsed.chargers] == ["CHG1"]
    assert parsed.chargers[0].status in ("available", "preparing", "charging", "finishing")
    expected_soc = sum(b.soc_pct for b in simulator.state.batteries) / 2
    assert parsed.battery.soc_pct == pytest.approx(expected_soc, abs=0.1)
    assert parsed.grid.import_kw is not None
    assert queued(box, "reading") == [reading]
    assert state.get("modbus_link_up") is True
    assert state.get("control_cycle_ok_at") == "2026-01-15T10:00:00Z"


def test_a_lost_link_is_recorded_and_its_gap_reported_when_it_comes_back(gateway, simulator):
    settings, state, box, client = gateway
    collect(settings, state, box, [client], NOW)
    port = simulator.port
    simulator.stop()
    assert collect(settings, state, box, [client], NOW + timedelta(seconds=5)) is None
    assert state.get("modbus_link_up") is False
    # The cycle did not count as good: the watchdog will stop beating.
    assert state.get("control_cycle_ok_at") == "2026-01-15T10:00:00Z"
    revived = ChargePostSimulator(port=port, speed=0, seed=1).start()
    try:
        assert collect(settings, state, box, [client], NOW + timedelta(seconds=35)) is not None
    finally:
        revived.stop()
    events = [Event.from_dict(e) for e in queued(box, "event")]
    assert [(e.kind, e.data["state"]) for e in events] == [
        ("modbus_link", "down"),
        ("modbus_link", "restored"),
    ]
    assert events[1].data["gap_s"] == 30
    assert state.get("modbus_gaps")[-1]["down_since"] == "2026-01-15T10:00:05Z"
    assert len(queued(box, "reading")) == 2


def test_a_watchdog_fallback_raises_an_alarm_event(gateway, simulator):
    settings, state, box, client = gateway
    collect(settings, state, box, [client], NOW)
    simulator.step(simulator.state.watchdog_timeout_s + 5)  # no heartbeat: the unit falls back
    collect(settings, state, box, [client], NOW + timedelta(seconds=2))
    events = [Event.from_dict(e) for e in queued(box, "event")]
    assert {e.kind for e in events} == {"alarm", "watchdog"}
    alarm = next(e for e in events if e.kind == "alarm")
    assert alarm.data["raised"] == ["watchdog_fallback"]
    # Unchanged alarm bits raise nothing more.
    collect(settings, state, box, [client], NOW + timedelta(seconds=4))
    assert box.depth()["events"] == 2


def test_the_control_cycle_task_body_reads_into_the_outbox(gateway):
    settings, *_ = gateway
    gw = Gateway(settings)
    result = run_control_cycle(gw, NOW)
    assert result["read"] is True
    assert gw.outbox().depth()["readings"] == 1
