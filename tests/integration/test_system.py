"""Both sides together over real sockets: a live Enexa, the ChargePost simulator, and a
provisioned Amperio gateway (Celery worker, watchdog worker, beat and API)."""

import os
import stat
from pathlib import Path

import pytest

from tests.integration.system import FAST, SITE, System, set_site_config, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("system")
    sys_ = System(tmp)
    sys_.before_provisioning = lambda: set_site_config(sys_, FAST)
    with sys_:
        # Each test starts from a gateway that is reading its ChargePost, whichever runs first.
        wait_until(sys_.latest_reading, 60, 0.5, what="the first reading in Enexa")
        yield sys_


def test_the_gateway_provisions_itself_and_enexa_shows_its_controller_active(system):
    controller = system.enexa_api("GET", "/v1/controllers/CTRL001").json()
    assert controller["state"] == "active"
    key_file = Path(system.amperio_env["AMPERIO_STATE_DIR"]) / "api_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert key_file.read_text().startswith("enx_")


def test_telemetry_read_from_the_simulator_is_stored_in_enexa(system):
    reading = wait_until(system.latest_reading, 60, 0.5, what="a reading in Enexa")
    assert reading["site_id"] == SITE
    units = {unit["id"]: unit for unit in reading["battery"]["units"]}
    assert set(units) == {"BAT1", "BAT2"}
    soc_now = system.simulator_values()["bat1_soc_pct"]
    assert abs(units["BAT1"]["soc_pct"] - soc_now) < 2.0
    assert reading["chargers"][0]["id"] == "CHG1"


def test_a_command_from_enexa_is_written_to_the_simulators_registers(system):
    command = system.dispatch("set_battery_power", {"power_kw": -60})
    system.wait_for_command(command["command_id"], "applied")
    values = system.simulator_values()
    assert values["bat1_power_setpoint_kw"] + values["bat2_power_setpoint_kw"] == pytest.approx(
        -60, abs=0.5
    )


def test_a_command_beyond_the_battery_limits_is_refused_and_nothing_is_written(system):
    before = system.simulator_values()["bat1_power_setpoint_kw"]
    command = system.dispatch("set_battery_power", {"power_kw": 500})
    result = system.wait_for_command(command["command_id"], "rejected", "failed")
    assert result["status"] == "rejected"
    assert "220" in result["detail"]
    assert system.simulator_values()["bat1_power_setpoint_kw"] == before


def test_the_same_dispatch_sent_twice_is_applied_once(system):
    first = system.dispatch("set_grid_limit", {"limit_kw": 350}, command_id="grid-once-1")
    second = system.dispatch("set_grid_limit", {"limit_kw": 350}, command_id="grid-once-1")
    assert first["command_id"] == second["command_id"]
    system.wait_for_command("grid-once-1", "applied")
    health = system.amperio_health()
    assert health["sites"][SITE]["modbus"]["link_up"] is True
    assert system.simulator_values()["site_grid_limit_kw"] == pytest.approx(350)


def test_a_configuration_change_on_enexa_is_applied_on_the_gateway_within_one_poll(system):
    set_site_config(system, {"watchdog": {"interval_s": 3, "timeout_s": 9}})
    version = system.enexa_api("GET", "/v1/controllers/CTRL001/config/version").json()["version"]
    # One poll interval (5 s) plus a watchdog beat (3 s) and some slack for the 2 cores.
    wait_until(lambda: system.simulator_values()["watchdog_timeout_s"] == 9, 20, what="new timeout")
    status = wait_until(
        lambda: (
            (s := system.enexa_api("GET", f"/v1/sites/{SITE}/status").json())["config_version"]
            == version
            and s
        ),
        15,
        what="applied version reported to Enexa",
    )
    assert status["config_version"] == version


def test_the_watchdog_holds_the_unit_while_the_gateway_runs_and_lets_go_when_it_dies(system):
    timeout_s = system.simulator_values()["watchdog_timeout_s"]
    # Two full timeouts with the gateway alive: never in the safe state.
    wait_until(lambda: system.simulator_values()["watchdog_heartbeat"], 15, what="heartbeats")
    deadline_checks = int(timeout_s * 2 / 0.5)
    for _ in range(deadline_checks):
        assert not system.simulator.state.safe, system.logs()
        __import__("time").sleep(0.5)
    system.procs["worker"].kill9()
    # The watchdog worker still runs but must stop beating for a dead control loop.
    wait_until(lambda: system.simulator.state.safe, timeout_s * 2 + 10, 0.2, what="safe state")
    system.start_gateway_process("worker")
