"""While Enexa is away the gateway follows the schedule, then keeps the grid limit on its own."""

from datetime import UTC, datetime, timedelta

from amperio.dispatch.autonomy import decide
from amperio.dispatch.autonomy_cycle import ModeTracker
from amperio.state import GatewayState
from shared.events import Event

NOW = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
CONFIG = {
    "settings": {
        "grid": {"limit_kw": 400.0},
        "battery": {"soc_min_pct": 10.0, "soc_max_pct": 90.0, "reserve_pct": 30.0},
        "autonomy": {"enter_after_s": 60},
    }
}
AWAY = NOW - timedelta(minutes=10)


def snapshot(load_kw=20.0, charger_kw=0.0, soc=(50.0, 50.0), battery_kw=(0.0, 0.0)):
    """What the ChargePost reports: the meter sees load + charger - battery discharge."""
    net = load_kw + charger_kw - sum(battery_kw)
    snap = {
        "grid_import_kw": max(net, 0.0),
        "grid_export_kw": max(-net, 0.0),
        "site_load_kw": load_kw,
        "chg1_power_kw": charger_kw,
        "site_grid_limit_kw": 400.0,
    }
    for n, (s, p) in enumerate(zip(soc, battery_kw, strict=True), start=1):
        snap.update(
            {
                f"bat{n}_soc_pct": s,
                f"bat{n}_power_kw": p,
                f"bat{n}_allowed_charge_kw": 110.0,
                f"bat{n}_allowed_discharge_kw": 110.0,
            }
        )
    return snap


def grid_after(snap, decision):
    return snap["site_load_kw"] + snap["chg1_power_kw"] - decision.battery_power_kw


def test_while_enexa_answers_the_gateway_leaves_the_battery_to_its_dispatch():
    decision = decide(NOW, snapshot(charger_kw=500), CONFIG, None, NOW - timedelta(seconds=30))
    assert decision.mode == "normal"
    assert decision.battery_power_kw is None


def test_past_the_configured_time_the_gateway_follows_the_schedule_slot_covering_now():
    schedule = [
        {"start": "2026-01-15T17:00:00Z", "end": "2026-01-15T17:59:59Z", "power_kw": 50},
        {"start": "2026-01-15T18:00:00Z", "end": "2026-01-15T19:00:00Z", "power_kw": -40},
    ]
    decision = decide(NOW, snapshot(), CONFIG, schedule, NOW - timedelta(seconds=61))
    assert decision.mode == "schedule"
    assert decision.battery_power_kw == -40
    assert sum(decision.unit_power_kw.values()) == -40


def test_a_schedule_slot_that_would_break_the_grid_limit_is_raised_to_keep_it():
    schedule = [{"start": NOW - timedelta(hours=1), "end": NOW + timedelta(hours=1), "power_kw": 0}]
    snap = snapshot(load_kw=20, charger_kw=450)
    decision = decide(NOW, snap, CONFIG, schedule, AWAY)
    assert decision.mode == "schedule"
    assert grid_after(snap, decision) < 400


def test_when_the_schedule_has_run_out_the_safe_local_policy_takes_over():
    schedule = [{"start": "2026-01-15T16:00:00Z", "end": "2026-01-15T17:00:00Z", "power_kw": 80}]
    decision = decide(NOW, snapshot(), CONFIG, schedule, AWAY)
    assert decision.mode == "safe_local"


def test_invalid_schedule_slots_are_ignored_rather_than_guessed_at():
    schedule = [
        {"start": "not a time", "end": "2026-01-15T19:00:00Z", "power_kw": 80},
        {"start": "2026-01-15T19:00:00Z", "end": "2026-01-15T17:00:00Z", "power_kw": 80},
        {"start": "2026-01-15T17:00:00Z", "end": "2026-01-15T19:00:00Z", "power_kw": "lots"},
    ]
    assert decide(NOW, snapshot(), CONFIG, schedule, AWAY).mode == "safe_local"


def test_safe_local_discharges_to_keep_the_grid_import_under_the_limit_with_a_margin():
    snap = snapshot(load_kw=30, charger_kw=450)
    decision = decide(NOW, snap, CONFIG, None, AWAY)
    assert decision.mode == "safe_local"
    assert 80 <= decision.battery_power_kw <= 110
    assert grid_after(snap, decision) <= 400 - 20  # 5 % margin


def test_safe_local_counts_the_battery_power_already_flowing():
    # The meter shows 320 kW because the battery already gives 160 kW: keep giving it.
    snap = snapshot(load_kw=30, charger_kw=450, battery_kw=(80.0, 80.0))
    decision = decide(NOW, snap, CONFIG, None, AWAY)
    assert grid_after(snap, decision) <= 380


def test_safe_local_splits_the_discharge_by_the_energy_each_unit_holds_above_the_minimum():
    decision = decide(
        NOW, snapshot(load_kw=30, charger_kw=450, soc=(70.0, 40.0)), CONFIG, None, AWAY
    )
    bat1, bat2 = decision.unit_power_kw["bat1"], decision.unit_power_kw["bat2"]
    assert bat1 > bat2 > 0
    assert abs(bat1 / bat2 - (70 - 10) / (40 - 10)) < 0.01


def test_a_unit_at_its_soc_minimum_gives_nothing_and_the_other_takes_over():
    decision = decide(
        NOW, snapshot(load_kw=30, charger_kw=450, soc=(10.0, 60.0)), CONFIG, None, AWAY
    )
    assert decision.unit_power_kw == {"bat1": 0.0, "bat2": 100.0}


def test_below_the_reserve_the_battery_charges_from_spare_headroom_only():
    snap = snapshot(load_kw=20, charger_kw=300, soc=(20.0, 20.0))
    decision = decide(NOW, snap, CONFIG, None, AWAY)
    assert decision.battery_power_kw < 0, "charging"
    assert grid_after(snap, decision) <= 380, "never over the limit to charge"
    assert decision.battery_power_kw == -60


def test_above_the_reserve_and_under_the_limit_the_battery_idles():
    decision = decide(
        NOW, snapshot(load_kw=20, charger_kw=100, soc=(60.0, 60.0)), CONFIG, None, AWAY
    )
    assert decision.battery_power_kw == 0


def test_no_unit_is_charged_above_the_soc_maximum():
    schedule = [{"start": NOW, "end": NOW + timedelta(hours=1), "power_kw": -200}]
    decision = decide(NOW, snapshot(soc=(90.0, 50.0)), CONFIG, schedule, AWAY)
    assert decision.unit_power_kw["bat1"] == 0
    assert decision.unit_power_kw["bat2"] == -110


def test_a_unit_is_never_asked_for_more_than_it_allows():
    snap = snapshot(load_kw=30, charger_kw=900)
    snap["bat1_allowed_discharge_kw"] = 40.0
    decision = decide(NOW, snap, CONFIG, None, AWAY)
    assert decision.unit_power_kw == {"bat1": 40.0, "bat2": 110.0}
    assert "can give 150.0" in decision.reason


def test_each_mode_change_is_an_event_once_and_the_mode_survives_a_restart(tmp_path):
    state = GatewayState(tmp_path / "state.sqlite3")
    tracker = ModeTracker(state, site_id="SITE001")
    safe = decide(NOW, snapshot(charger_kw=450), CONFIG, None, AWAY)
    normal = decide(NOW, snapshot(), CONFIG, None, NOW)

    assert tracker.observe(normal, NOW) is None
    event = tracker.observe(safe, NOW)
    parsed = Event.from_dict(event)
    assert (parsed.kind, parsed.data["from"], parsed.data["to"]) == (
        "mode_change",
        "normal",
        "safe_local",
    )
    assert tracker.observe(safe, NOW) is None
    assert ModeTracker(state, site_id="SITE001").observe(safe, NOW) is None
    back = ModeTracker(state, site_id="SITE001").observe(normal, NOW + timedelta(minutes=5))
    assert Event.from_dict(back).data["to"] == "normal"


def run_session(
    tmp_path, limit_kw: float, battery_soc_pct: float | None = None, reserve_pct: float = 30.0
) -> dict:
    """15 simulated minutes, one control cycle per second, against the simulator: Enexa
    unreachable from the start (autonomy after the configured 60 s) and back at 800 s; a
    300 kW vehicle arrives at 90 s. What was read each second, the modes and the outbox."""
    from amperio.dispatch.autonomy_cycle import run_cycle
    from amperio.modbus.client import ChargePostClient
    from amperio.simulator.physics import Vehicle
    from amperio.simulator.server import ChargePostSimulator
    from amperio.telemetry.outbox import Outbox

    config = {
        "settings": {
            "grid": {"limit_kw": limit_kw},
            "battery": {"soc_min_pct": 10.0, "soc_max_pct": 90.0, "reserve_pct": reserve_pct},
            # Above the charger's ramp within one control cycle (25 kW/s, cycles of 1 s).
            "autonomy": {"enter_after_s": 60, "margin_kw": 30.0},
        }
    }
    state = GatewayState(tmp_path / "state.sqlite3")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    settings = type("S", (), {"site_id": "SITE001", "commands_path": tmp_path / "c.sqlite3"})
    simulator = ChargePostSimulator(speed=0, seed=5).start()
    try:
        with simulator.state.lock:
            simulator.state.mean_arrival_s = 0  # only the session the test starts
            for battery in simulator.state.batteries:
                if battery_soc_pct is not None:
                    battery.soc_pct = battery_soc_pct
        vehicle = Vehicle(capacity_kwh=300.0, soc_pct=10.0, target_soc_pct=95.0, max_power_kw=300.0)
        client = ChargePostClient("127.0.0.1", simulator.port)
        imports, charger, modes = [], [], []
        for second in range(900):
            now = NOW + timedelta(seconds=second)
            if second == 90:  # a vehicle arrives while the gateway is on its own
                with simulator.state.lock:
                    simulator.state.chargers[0].plug_in(vehicle)
            client.write("watchdog_heartbeat", second % 60000)
            snap = client.read_snapshot()
            imports.append(snap["grid_import_kw"])
            charger.append(snap["chg1_power_kw"])
            result = run_cycle(
                client=client,
                state=state,
                config=config,
                snapshot=snap,
                outbox=outbox,
                settings=settings,
                enexa_unreachable_for_s=float(second) if second < 800 else 0.0,
                now=now,
                schedule=[],
            )
            modes.append(result["mode"])
            simulator.step(1.0)
        client.close()
    finally:
        simulator.stop()
    return {"imports": imports, "charger": charger, "modes": modes, "last": snap, "outbox": outbox}


def test_the_safe_policy_keeps_the_simulators_grid_import_under_the_limit_during_a_300_kw_session(
    tmp_path,
):
    limit_kw = 250.0
    run = run_session(tmp_path, limit_kw)
    imports, charger, modes, snap = run["imports"], run["charger"], run["modes"], run["last"]
    # From the first reading after the first autonomous write to Enexa's return.
    autonomous = imports[62:801]
    socs = (snap["bat1_soc_pct"], snap["bat2_soc_pct"])
    print(
        f"300 kW session, limit {limit_kw:g} kW: charger peak {max(charger):.0f} kW, grid import "
        f"peak {max(autonomous):.1f} kW in autonomy, SOC at the end {socs}"
    )
    assert max(charger) >= 299, "the session ran at 300 kW"
    assert max(autonomous) <= limit_kw
    assert modes[:61] == ["normal"] * 61
    assert set(modes[61:800]) == {"safe_local"}
    assert set(modes[800:]) == {"normal"}
    assert all(s >= 10.0 for s in socs)
    assert (snap["bat1_power_kw"], snap["bat2_power_kw"]) == (0, 0), "handed back idle"
    events = [i.payload for i in run["outbox"].next_batch("event", 10)]
    assert [e["data"]["to"] for e in events if e["kind"] == "mode_change"] == [
        "safe_local",
        "normal",
    ]


def test_with_empty_batteries_the_capped_charger_keeps_the_simulators_grid_import_under_the_limit(
    tmp_path,
):
    limit_kw = 250.0
    # At the SOC minimum, and no reserve to charge towards: the battery cannot help at all.
    run = run_session(tmp_path, limit_kw, battery_soc_pct=10.0, reserve_pct=10.0)
    imports, charger, snap = run["imports"], run["charger"], run["last"]
    autonomous = imports[62:801]
    assert (snap["bat1_soc_pct"], snap["bat2_soc_pct"]) == (10.0, 10.0)
    print(
        f"300 kW session, empty batteries, limit {limit_kw:g} kW: charger peak in autonomy "
        f"{max(charger[62:801]):.0f} kW, grid import peak {max(autonomous):.1f} kW"
    )
    assert max(autonomous) <= limit_kw
    # Capped, not stopped: the vehicle charges with what the connection has left.
    assert max(charger[62:801]) >= 150
    assert snap["chg1_power_limit_kw"] == 300, "the cap given back when Enexa returned"
    assert max(charger[820:]) >= 299, "and the session back at full power"


# -- chargers capped where the battery cannot cover the load ----------------------------------


def test_with_the_battery_at_its_minimum_the_chargers_are_capped_to_keep_the_grid_limit():
    snap = snapshot(load_kw=150, charger_kw=300, soc=(10.0, 10.0))
    decision = decide(NOW, snap, CONFIG, None, AWAY)
    assert decision.battery_power_kw == 0
    # 400 kW limit less the 20 kW margin, less the 150 kW the rest of the site draws.
    assert decision.charger_limit_kw == {"chg1": 230.0}
    assert 150 + decision.charger_limit_kw["chg1"] <= 400
    assert "Chargers capped at 230.0 kW" in decision.reason


def test_the_cap_counts_what_the_battery_can_still_give_and_holds_once_the_charger_obeys_it():
    decision = decide(
        NOW, snapshot(load_kw=250, charger_kw=300, soc=(50.0, 10.0)), CONFIG, None, AWAY
    )
    # 380 kW target - 250 kW other load + 110 kW from the one unit above its minimum.
    assert decision.charger_limit_kw == {"chg1": 240.0}
    # Next cycle the charger draws its cap and the battery its share: the same cap, no flapping.
    obeyed = snapshot(load_kw=250, charger_kw=240, soc=(50.0, 10.0), battery_kw=(110.0, 0.0))
    again = decide(NOW, obeyed, CONFIG, None, AWAY)
    assert again.charger_limit_kw == {"chg1": 240.0}
    assert grid_after(obeyed, again) <= 400


def test_no_cap_while_the_battery_can_cover_the_chargers_maximum():
    decision = decide(
        NOW, snapshot(load_kw=150, charger_kw=300, soc=(50.0, 50.0)), CONFIG, None, AWAY
    )
    assert decision.charger_limit_kw == {}
    assert decision.battery_power_kw == 70  # 150 + 300 - 380


def test_a_configured_charger_maximum_is_what_the_cap_shares_and_restores():
    config = {**CONFIG, "limits": {"chargers": {"CHG1": {"max_power_kw": 150.0}}}}
    low = decide(NOW, snapshot(load_kw=150, charger_kw=100, soc=(10.0, 10.0)), config, None, AWAY)
    assert low.charger_limit_kw == {}  # 230 kW of room above a 150 kW charger: nothing to cap
    high = decide(NOW, snapshot(load_kw=300, charger_kw=100, soc=(10.0, 10.0)), config, None, AWAY)
    assert high.charger_limit_kw == {"chg1": 80.0}


def test_chargers_with_a_vehicle_are_served_first_and_idle_ones_share_what_is_left():
    snap = snapshot(load_kw=20, charger_kw=120, soc=(10.0, 10.0))
    snap.update({"chg1_connector_state": 1, "chg2_power_kw": 0.0, "chg2_connector_state": 0})
    decision = decide(NOW, snap, CONFIG, None, AWAY)
    # 360 kW for the chargers: the occupied one gets its 300 kW, the idle one the 60 left.
    assert decision.charger_limit_kw == {"chg1": 300.0, "chg2": 60.0}
    snap.update({"site_load_kw": 220.0, "grid_import_kw": 340.0})  # the rest of the site: 220
    tight = decide(NOW, snap, CONFIG, None, AWAY)
    assert tight.charger_limit_kw == {"chg1": 160.0, "chg2": 0.0}


def test_the_caps_are_written_and_given_back_when_enexa_returns_never_above_a_lease(tmp_path):
    from amperio.dispatch.autonomy_cycle import run_cycle
    from amperio.modbus.client import ChargePostClient
    from amperio.simulator.server import ChargePostSimulator
    from amperio.telemetry.outbox import Outbox

    state = GatewayState(tmp_path / "state.sqlite3")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    settings = type("S", (), {"site_id": "SITE001"})
    simulator = ChargePostSimulator(speed=0, seed=5).start()
    try:
        client = ChargePostClient("127.0.0.1", simulator.port)

        def cycle(unreachable_s, leases=()):
            snap = client.read_snapshot()
            snap.update({"site_load_kw": 150.0, "grid_import_kw": 150.0 + snap["chg1_power_kw"]})
            for n in (1, 2):
                snap[f"bat{n}_soc_pct"], snap[f"bat{n}_power_kw"] = 10.0, 0.0
            return run_cycle(
                client=client,
                state=state,
                config=CONFIG,
                snapshot=snap,
                outbox=outbox,
                settings=settings,
                enexa_unreachable_for_s=unreachable_s,
                now=NOW,
                schedule=[],
                leases=list(leases),
            )

        cycle(600)
        assert client.read(["chg1_power_limit_kw"]) == {"chg1_power_limit_kw": 230.0}
        lease = {
            "register": "chg1_power_limit_kw",
            "value": 90.0,
            "valid_until": NOW.replace(hour=19),
        }
        cycle(600, [lease])
        assert client.read(["chg1_power_limit_kw"]) == {"chg1_power_limit_kw": 90.0}
        back = cycle(0, [lease])
        assert back["mode"] == "normal"
        assert client.read(["chg1_power_limit_kw"]) == {"chg1_power_limit_kw": 90.0}  # the lease's
        cycle(600)
        cycle(0)
        assert client.read(["chg1_power_limit_kw"]) == {"chg1_power_limit_kw": 300.0}
        assert cycle(0)["written"] == {}  # given back once, then left alone
        client.close()
    finally:
        simulator.stop()
