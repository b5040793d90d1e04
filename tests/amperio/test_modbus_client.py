"""ChargePostClient against the simulator over a real socket: reads, writes, injected faults."""

import socket

import pytest
from pymodbus.client import ModbusTcpClient

from amperio.modbus.client import ChargePostClient
from amperio.modbus.errors import ModbusDeviceError, ModbusLinkError, RegisterRangeError
from amperio.modbus.registermap import load_map
from amperio.simulator import ChargePostSimulator


@pytest.fixture
def sim(start_sim):
    return start_sim(watchdog_timeout_s=3600, no_arrivals=True)


@pytest.fixture
def client(sim):
    with ChargePostClient("127.0.0.1", sim.port, timeout_s=1.0, retries=2, backoff_s=0.05) as c:
        yield c


@pytest.fixture
def raw(sim):
    """A plain pymodbus client: it sends what ChargePostClient never would."""
    modbus = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=2, retries=0)
    assert modbus.connect()
    try:
        yield modbus
    finally:
        modbus.close()


def test_a_full_snapshot_reads_every_readable_register_in_two_requests(sim, client):
    snapshot = client.read_snapshot()
    assert set(snapshot) == {r.name for r in load_map().readable()}
    assert client.requests_sent == 2
    assert sim.requests_by_function == {3: 1, 4: 1}
    assert snapshot["vendor"] == "ADS-TEC Energy"
    assert snapshot["interface_version"] == "2.6"
    assert snapshot["bat1_soc_pct"] == 50.0


def test_a_setpoint_write_uses_function_16_for_two_words_and_returns_the_value_read_back(
    sim, client
):
    assert client.write("bat1_power_setpoint_kw", -42.5) == -42.5
    assert sim.requests_by_function[16] == 1
    assert sim.state.batteries[0].setpoint_kw == -42.5
    sim.step(2)
    assert client.read(["bat1_power_kw"]) == {"bat1_power_kw": -42.5}


def test_a_one_word_write_uses_function_06(sim, client):
    assert client.write("chg1_power_limit_kw", 75.5) == 75.5
    assert sim.requests_by_function[6] == 1
    assert sim.requests_by_function[16] == 0
    assert sim.state.chargers[0].power_limit_kw == 75.5


def test_write_many_checks_every_value_before_writing_any(sim, client):
    with pytest.raises(RegisterRangeError, match="bat2_power_setpoint_kw"):
        client.write_many({"bat1_power_setpoint_kw": 10, "bat2_power_setpoint_kw": 9999})
    assert client.requests_sent == 0
    assert sim.state.batteries[0].setpoint_kw == 0
    result = client.write_many({"bat1_power_setpoint_kw": 10, "bat2_power_setpoint_kw": -10})
    assert result == {"bat1_power_setpoint_kw": 10.0, "bat2_power_setpoint_kw": -10.0}


def test_write_many_without_read_back_sends_only_the_writes(sim, client):
    values = {"bat1_power_setpoint_kw": 10, "bat2_power_setpoint_kw": -10}
    assert client.write_many(values, read_back=False) == values
    assert client.requests_sent == 2
    assert [b.setpoint_kw for b in sim.state.batteries] == [10.0, -10.0]


def test_an_out_of_range_write_is_refused_before_sending_and_leaves_the_register_untouched(
    sim, client
):
    client.write("chg1_power_limit_kw", 100)
    sent = client.requests_sent
    with pytest.raises(RegisterRangeError, match="chg1_power_limit_kw.*above maximum 300"):
        client.write("chg1_power_limit_kw", 301)
    assert client.requests_sent == sent
    assert client.read(["chg1_power_limit_kw"]) == {"chg1_power_limit_kw": 100.0}
    assert sim.state.chargers[0].power_limit_kw == 100


def test_a_read_only_register_cannot_be_written_nor_a_missing_value_sent(client):
    with pytest.raises(RegisterRangeError, match="bat1_soc_pct is not writable"):
        client.write("bat1_soc_pct", 80)
    with pytest.raises(RegisterRangeError, match="no value"):
        client.write("bat1_power_setpoint_kw", None)
    with pytest.raises(KeyError, match="no register named 'bat9_soc_pct'"):
        client.read(["bat9_soc_pct"])
    assert client.requests_sent == 0


def test_an_exception_answer_becomes_an_error_naming_the_register(sim, client):
    sim.faults.exception_for = {"bat2_soc_pct"}
    with pytest.raises(ModbusDeviceError, match="bat2_soc_pct") as raised:
        client.read_snapshot()
    assert raised.value.register == "bat2_soc_pct"
    assert raised.value.code == 4
    with pytest.raises(ModbusDeviceError, match="bat2_soc_pct"):
        client.read(["bat2_soc_pct"])
    sim.faults.exception_for = {"chg1_power_limit_kw"}
    with pytest.raises(ModbusDeviceError, match="chg1_power_limit_kw"):
        client.write("chg1_power_limit_kw", 10)
    sim.faults.clear()
    assert client.read(["bat2_soc_pct"]) == {"bat2_soc_pct": 50.0}


def test_a_dropped_connection_is_reconnected_and_the_read_succeeds(sim, client):
    assert client.read(["serial"]) == {"serial": "CP-SIM-0001"}
    sim.faults.drop_connections()
    assert client.read(["serial"]) == {"serial": "CP-SIM-0001"}
    assert client.read_snapshot()["vendor"] == "ADS-TEC Energy"


def test_a_delayed_answer_times_out_as_a_link_error_and_the_client_recovers(sim):
    with ChargePostClient("127.0.0.1", sim.port, timeout_s=0.3, retries=1, backoff_s=0.05) as c:
        sim.faults.delay_s = 1.0
        with pytest.raises(ModbusLinkError, match="no answer after 2 attempts"):
            c.read(["vendor"])
        sim.faults.delay_s = 0
        assert c.read(["vendor", "model"]) == {"vendor": "ADS-TEC Energy", "model": "ChargePost"}


def test_undefined_values_read_as_none(sim, client):
    sim.faults.undefined = {"bat1_soc_pct", "grid_import_kw", "chg1_session_energy_kwh", "serial"}
    snapshot = client.read_snapshot()
    assert snapshot["bat1_soc_pct"] is None
    assert snapshot["grid_import_kw"] is None
    assert snapshot["chg1_session_energy_kwh"] is None
    assert snapshot["serial"] is None
    assert snapshot["bat2_soc_pct"] == 50.0


def test_an_unreachable_unit_is_a_link_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with ChargePostClient("127.0.0.1", port, timeout_s=0.3, retries=1, backoff_s=0.01) as c:
            with pytest.raises(ModbusLinkError):
                c.read_snapshot()


def test_the_simulator_refuses_an_out_of_range_raw_write_and_keeps_the_register(sim, client):
    # A client that skips our range check still cannot push the unit outside the map's range.
    client.write("chg1_power_limit_kw", 100)
    client._modbus.write_register(load_map()["chg1_power_limit_kw"].address, 3010)
    assert client.read(["chg1_power_limit_kw"]) == {"chg1_power_limit_kw": 100.0}


def test_the_client_reconnects_to_a_unit_that_went_away_and_came_back(sim):
    port = sim.port
    with ChargePostClient("127.0.0.1", port, timeout_s=0.5, retries=1, backoff_s=0.05) as c:
        assert c.read(["serial"]) == {"serial": "CP-SIM-0001"}
        sim.stop()
        with pytest.raises(ModbusLinkError):
            c.read(["serial"])
        with ChargePostSimulator(port=port, speed=0) as again:
            again.state.serial = "CP-SIM-0002"
            assert c.read(["serial"]) == {"serial": "CP-SIM-0002"}


CHARGER_LIMIT = load_map()["chg1_power_limit_kw"].address
OUTSIDE_THE_MAP = {
    "write_coil (05)": lambda raw: raw.write_coil(0, True),
    "write_coils (15)": lambda raw: raw.write_coils(0, [True, True]),
    "mask_write_register (22)": lambda raw: raw.mask_write_register(
        address=CHARGER_LIMIT, and_mask=0x0000, or_mask=0x0064
    ),
    "readwrite_registers (23)": lambda raw: raw.readwrite_registers(
        read_address=0, read_count=1, write_address=CHARGER_LIMIT, values=[100]
    ),
    "read_coils (01)": lambda raw: raw.read_coils(0),
    "report_device_id (17)": lambda raw: raw.report_device_id(),
}


@pytest.mark.parametrize("request_name", OUTSIDE_THE_MAP)
def test_a_function_code_outside_the_map_is_answered_illegal_function_and_changes_nothing(
    sim, raw, request_name
):
    # The map speaks of 03, 04, 06 and 16 only; the unit refuses the rest with exception 01.
    limit_before = sim.state.chargers[0].power_limit_kw
    response = OUTSIDE_THE_MAP[request_name](raw)
    assert response.isError()
    assert response.exception_code == 1
    assert sim.state.chargers[0].power_limit_kw == limit_before
