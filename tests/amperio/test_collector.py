"""The control cycle's reading, from the real ChargePost simulator into the outbox."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from amperio.gateway import Gateway, run_control_cycle
from amperio.modbus.client import ChargePostClient
from amperio.settings import load
from amperio.simulator import ChargePostSimulator
from amperio.state import GatewayState
from amperio.telemetry.collector import collect
from amperio.telemetry.outbox import Outbox
from shared.events import Event
from shared.telemetry import TelemetryReading

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def simulator(start_sim):
    return start_sim(seed=1)


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
    reading, snapshots = collect(settings, state, box, [client], NOW)
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
    # The register snapshot comes back too, for the rest of the cycle to act on.
    assert snapshots[0]["bat1_soc_pct"] == pytest.approx(parsed.battery.units[0].soc_pct)
    assert state.get("modbus_link_up") is True
    assert state.get("control_cycle_ok_at") == "2026-01-15T10:00:00Z"


def test_a_lost_link_is_recorded_and_its_gap_reported_when_it_comes_back(gateway, simulator):
    settings, state, box, client = gateway
    collect(settings, state, box, [client], NOW)
    port = simulator.port
    simulator.stop()
    assert collect(settings, state, box, [client], NOW + timedelta(seconds=5)) == (None, [None])
    assert state.get("modbus_link_up") is False
    # The cycle did not count as good: the watchdog will stop beating.
    assert state.get("control_cycle_ok_at") == "2026-01-15T10:00:00Z"
    revived = ChargePostSimulator(port=port, speed=0, seed=1).start()
    try:
        assert collect(settings, state, box, [client], NOW + timedelta(seconds=35))[0] is not None
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


def test_readings_reach_enexa_through_the_outbox_and_stay_while_enexa_is_down(gateway, tmp_path):
    from amperio.gateway import flush_outbox
    from tests.httppeer import HttpPeer

    settings, *_ = gateway
    enexa_up = {"value": False}

    def enexa(method, path, headers, body):
        if not enexa_up["value"]:
            return 503, {"detail": "down"}
        items = body["items"]
        return 200, {"accepted": len(items), "duplicate": 0, "rejected": 0, "errors": []}

    with HttpPeer(enexa) as peer:
        (tmp_path / "api_key").write_text("enx_test.key")
        gw = Gateway(replace(settings, enexa_url=peer.url, key_file=tmp_path / "api_key"))
        run_control_cycle(gw, NOW)
        flush_outbox(gw, NOW + timedelta(seconds=1))
        assert gw.outbox().depth()["readings"] == 1
        assert gw.state.get("enexa_unreachable_since") == "2026-01-15T10:00:01Z"
        enexa_up["value"] = True
        gw.flusher().jitter_s = (0.0, 0.0)
        run_control_cycle(gw, NOW + timedelta(seconds=2))
        for second in range(3, 6):
            flush_outbox(gw, NOW + timedelta(seconds=second))
    posted = [i for r in peer.requests if r["path"] == "/v1/telemetry" for i in r["body"]["items"]]
    stored = {i["message_id"] for i in posted}
    assert len(stored) == 2
    assert gw.outbox().depth()["readings"] == 0
    assert gw.state.get("enexa_reachable") is True
    assert gw.state.get("buffer_depth") == 0


def test_a_configured_grid_limit_reaches_the_unit_unless_a_dispatched_one_holds(gateway, simulator):
    from amperio.enexa_link import configsync

    settings, state, *_ = gateway
    gw = Gateway(settings)
    config = configsync.load_config(settings)
    config["settings"]["grid"] = {"limit_kw": 320.0}
    config["limits"] = {
        "grid": {"limit_kw": 400.0},
        "battery": {"max_charge_kw": 220.0, "max_discharge_kw": 220.0, "units": {}},
        "chargers": {"CHG1": {"max_power_kw": 300.0}},
    }
    configsync.apply_config(settings, state, config, NOW)
    run_control_cycle(gw, NOW)
    assert simulator.state.site_grid_limit_kw == pytest.approx(320.0)

    gw.commands().submit(
        {
            "site_id": settings.site_id,
            "command": "set_grid_limit",
            "params": {"limit_kw": 250},
            "timestamp": NOW.isoformat(),
            "command_id": "grid-250",
            "valid_until": (NOW + timedelta(minutes=10)).isoformat(),
        },
        config["limits"],
        NOW,
    )
    gw.commands().execute("grid-250", gw.chargeposts(config)[0], config, NOW)
    run_control_cycle(gw, NOW + timedelta(seconds=5))
    assert simulator.state.site_grid_limit_kw == pytest.approx(250.0)


def test_a_running_gateway_acts_on_a_new_configuration_from_the_next_cycle(gateway, simulator):
    from amperio.enexa_link import configsync

    settings, state, *_ = gateway
    gw = Gateway(settings)
    config = configsync.load_config(settings)
    for cycle, limit_kw in enumerate((320.0, 280.0)):
        config["settings"]["grid"] = {"limit_kw": limit_kw}
        configsync.apply_config(settings, state, config, NOW)  # what the config sync does
        run_control_cycle(gw, NOW + timedelta(seconds=5 * cycle))
        assert simulator.state.site_grid_limit_kw == pytest.approx(limit_kw)


def test_with_two_chargeposts_autonomy_drives_the_batteries_of_both(tmp_path, monkeypatch):
    """The units are numbered across ChargePosts (BAT3, BAT4 on the second); autonomy keeps
    the site's import (both feeds) under the site's limit with every ChargePost's batteries."""
    from amperio.enexa_link import configsync
    from amperio.simulator.physics import Vehicle

    first = ChargePostSimulator(port=0, speed=0, seed=1).start()
    second = ChargePostSimulator(port=0, speed=0, seed=2).start()
    try:
        settings = replace(load(), state_dir=tmp_path)
        state = GatewayState(settings.state_path)
        config = configsync.load_config(settings)
        config["settings"]["modbus"] = [
            {"host": "127.0.0.1", "port": first.port},
            {"host": "127.0.0.1", "port": second.port},
        ]
        config["settings"]["grid"] = {"limit_kw": 100.0}
        configsync.apply_config(settings, state, config, NOW)
        with first.state.lock:  # a vehicle drawing far more than the grid limit
            first.state.chargers[0].plug_in(Vehicle(capacity_kwh=400, max_power_kw=300))
        first.step(60)
        state.set("enexa_unreachable_since", "2026-01-15T09:00:00Z")  # Enexa away for an hour
        result = run_control_cycle(Gateway(settings), NOW)
        assert result["autonomy"]["mode"] == "safe_local"
        for simulator in (first, second):  # each ChargePost's batteries discharge
            assert sum(b.setpoint_kw for b in simulator.state.batteries) > 0, result
    finally:
        first.stop()
        second.stop()
