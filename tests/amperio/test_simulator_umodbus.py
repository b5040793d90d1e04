"""An independent client (uModbus) reads the simulator and agrees with the map on values, encodings.

Decoding here uses only `struct` and the CSV read with `csv`, so our codec and our simulator
cannot share a mistake unnoticed."""

import csv
import socket
import struct

import pytest
from umodbus import exceptions as umodbus_errors
from umodbus.client import tcp

from amperio.modbus.client import ChargePostClient
from amperio.modbus.registermap import DEFAULT_MAP
from amperio.simulator.physics import Vehicle

FORMATS = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "float32": ">f"}


def csv_rows() -> list[dict[str, str]]:
    with DEFAULT_MAP.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def independent_decode(row: dict[str, str], words: list[int]):
    data = b"".join(struct.pack(">H", w) for w in words)
    if row["type"] == "string":
        return data.rstrip(b"\x00").decode()
    raw = struct.unpack(FORMATS[row["type"]], data)[0]
    return raw * float(row["scale"])


@pytest.fixture
def sim(start_sim):
    return start_sim(seed=3, watchdog_timeout_s=3600, no_arrivals=True)


@pytest.fixture
def sock(sim):
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        yield s


def read_table(sock, table: str, count: int) -> list[int]:
    request = (tcp.read_holding_registers if table == "holding" else tcp.read_input_registers)(
        1, 0, count
    )
    return tcp.send_message(request, sock)


def busy_unit(sim) -> None:
    """Put every register in motion: a session charging, batteries working, counters running."""
    sim.state.chargers[0].plug_in(Vehicle(capacity_kwh=77, soc_pct=30, max_power_kw=150))
    sim.state.apply_write("chg1_power_limit_kw", 120.5)
    sim.state.apply_write("bat1_power_setpoint_kw", -33.3)
    sim.state.apply_write("bat2_power_setpoint_kw", 61.7)
    sim.step(120)


def test_umodbus_reads_every_register_as_the_map_describes_it(sim, sock):
    busy_unit(sim)
    rows = csv_rows()
    tables = {
        table: read_table(
            sock,
            table,
            max(int(r["address"]) + int(r["count"]) for r in rows if r["table"] == table),
        )
        for table in ("holding", "input")
    }
    truth = sim.state.values()
    with ChargePostClient("127.0.0.1", sim.port) as ours:
        snapshot = ours.read_snapshot()
    for row in rows:
        start = int(row["address"])
        words = tables[row["table"]][start : start + int(row["count"])]
        value = independent_decode(row, words)
        name = row["name"]
        if isinstance(value, str):
            assert value == truth[name] == snapshot[name], name
            continue
        resolution = float(row["scale"]) if row["type"] != "float32" else 1e-4 * max(1, abs(value))
        assert value == pytest.approx(truth[name], abs=resolution), name
        assert snapshot[name] == pytest.approx(value, abs=1e-6 * max(1, abs(value))), name


def test_known_values_have_the_exact_words_the_map_implies(sim, sock):
    busy_unit(sim)
    holding = read_table(sock, "holding", 110)
    assert holding[0:4] == [0x4144, 0x532D, 0x5445, 0x4320]  # "ADS-TEC " big-endian ASCII
    assert holding[32:34] == [0x322E, 0x3600]  # interface version "2.6"
    assert holding[75:77] == list(struct.unpack(">HH", struct.pack(">i", -3330)))  # -33.3 kW
    assert holding[107] == 1205  # chg1 limit 120.5 kW at scale 0.1


def test_a_setpoint_written_by_umodbus_is_what_our_client_reads_back(sim, sock):
    words = list(struct.unpack(">HH", struct.pack(">i", -1234)))  # -12.34 kW at scale 0.01
    tcp.send_message(tcp.write_multiple_registers(1, 75, words), sock)
    tcp.send_message(tcp.write_single_register(1, 107, 455), sock)  # 45.5 kW
    assert sim.state.batteries[0].setpoint_kw == -12.34
    with ChargePostClient("127.0.0.1", sim.port) as ours:
        values = ours.read(["bat1_power_setpoint_kw", "chg1_power_limit_kw"])
    assert values == {"bat1_power_setpoint_kw": -12.34, "chg1_power_limit_kw": 45.5}


def test_the_simulator_refuses_bad_writes_from_any_client(sim, sock):
    with pytest.raises(umodbus_errors.IllegalDataValueError):
        tcp.send_message(tcp.write_single_register(1, 107, 3001), sock)  # 300.1 kW > max
    with pytest.raises(umodbus_errors.IllegalDataAddressError):
        tcp.send_message(tcp.write_single_register(1, 70, 500), sock)  # bat1_soc_pct is RO
    with pytest.raises(umodbus_errors.IllegalDataAddressError):
        tcp.send_message(tcp.write_single_register(1, 75, 0), sock)  # half of an int32
    assert sim.state.chargers[0].power_limit_kw == 300
    assert sim.state.batteries[0].soc_pct == 50
