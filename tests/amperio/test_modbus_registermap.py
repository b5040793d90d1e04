"""The register map file: it loads, it is validated, and its read plan coalesces reads."""

import pytest

from amperio.modbus.registermap import (
    DEFAULT_MAP,
    MAX_READ_COUNT,
    Register,
    RegisterMap,
    RegisterMapError,
    load_map,
)

HEADER = (
    "name,table,address,type,count,scale,unit,access,word_order,undefined,min,max,description\n"
)


def write_map(tmp_path, rows: str):
    path = tmp_path / "map.csv"
    path.write_text(HEADER + rows)
    return path


def test_the_chargepost_map_covers_what_the_controller_needs():
    m = load_map()
    for name in [
        "vendor",
        "interface_version",
        "watchdog_heartbeat",
        "grid_frequency_hz",
        "site_grid_limit_kw",
        "bat2_power_setpoint_kw",
        "bat2_setpoint_reversion_kw",
        "chg1_fallback_limit_kw",
    ]:
        assert name in m
    assert m["bat1_power_setpoint_kw"].writable
    assert not m["bat1_soc_pct"].writable


def test_a_full_snapshot_of_the_chargepost_map_takes_two_requests():
    blocks = load_map().read_plan()
    assert [(b.table, b.address) for b in blocks] == [("holding", 0), ("input", 0)]
    assert all(b.count <= MAX_READ_COUNT for b in blocks)
    covered = {r.name for b in blocks for r in b.registers}
    assert covered == {r.name for r in load_map().readable()}


def test_overlapping_registers_are_refused_naming_both(tmp_path):
    path = write_map(
        tmp_path,
        "a,holding,0,uint32,2,1,,RO,big,,,,\nb,holding,1,uint16,1,1,,RO,big,,,,\n",
    )
    with pytest.raises(RegisterMapError, match="'b'.*overlaps 'a'"):
        load_map(path)


def test_the_same_address_in_different_tables_is_fine(tmp_path):
    path = write_map(
        tmp_path, "a,holding,0,uint16,1,1,,RO,big,,,,\nb,input,0,uint16,1,1,,RO,big,,,,\n"
    )
    assert len(load_map(path)) == 2


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a,holding,0,uint32,1,1,,RO,big,,,,\n", "count 1 does not fit uint32"),
        ("a,holding,0,float32,3,1,,RO,big,,,,\n", "count 3 does not fit float32"),
        ("a,coils,0,uint16,1,1,,RO,big,,,,\n", "table 'coils'"),
        ("a,holding,0,uint64,4,1,,RO,big,,,,\n", "type 'uint64'"),
        ("a,holding,0,uint16,1,1,,XX,big,,,,\n", "access 'XX'"),
        ("a,holding,0,uint16,1,1,,RO,middle,,,,\n", "word_order"),
        ("a,holding,0,uint16,1,1,,RO,big,0x10000,,,\n", "undefined value does not fit"),
        ("a,holding,0,uint16,1,1,,RW,big,,10,5,\n", "min 10.0 > max 5.0"),
        ("a,holding,0,uint16,1,1,,RO,big,,,,\na,holding,5,uint16,1,1,,RO,big,,,,\n", "duplicate"),
        ("a,holding,zero,uint16,1,1,,RO,big,,,,\n", "line 2"),
    ],
)
def test_malformed_rows_are_refused_with_a_clear_error(tmp_path, row, message):
    with pytest.raises(RegisterMapError, match=message):
        load_map(write_map(tmp_path, row))


def test_a_map_missing_a_column_is_refused(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("name,table,address\na,holding,0\n")
    with pytest.raises(RegisterMapError, match="missing columns"):
        load_map(path)


def u16(name, address, table="holding"):
    return Register(name=name, table=table, address=address, type="uint16", count=1)


def test_registers_across_small_gaps_share_one_read():
    m = RegisterMap([u16("a", 0), u16("b", 10), u16("c", 100)])
    plan = m.read_plan(max_gap=16)
    assert [(b.address, b.count) for b in plan] == [(0, 11), (100, 1)]


def test_no_read_block_exceeds_125_registers():
    m = RegisterMap([u16(f"r{i}", i * 10) for i in range(40)])
    plan = m.read_plan(max_gap=16)
    assert all(b.count <= 125 for b in plan)
    assert sum(len(b.registers) for b in plan) == 40
    assert len(plan) == 4  # 400 addresses in blocks of at most 125


def test_tables_are_never_mixed_in_one_read():
    m = RegisterMap([u16("a", 0), u16("b", 1, table="input")])
    assert [b.table for b in m.read_plan()] == ["holding", "input"]


def test_write_only_registers_are_left_out_of_reads():
    wo = Register(name="w", table="holding", address=1, type="uint16", count=1, access="WO")
    m = RegisterMap([u16("a", 0), wo])
    assert [r.name for b in m.read_plan() for r in b.registers] == ["a"]


def test_the_default_map_is_the_packaged_csv():
    assert DEFAULT_MAP.name == "chargepost-2.6.csv"
    assert load_map().source == "chargepost-2.6.csv"
