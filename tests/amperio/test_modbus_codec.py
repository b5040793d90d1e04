"""The codec: every type round-trips, known register dumps decode, undefined values read as None."""

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amperio.modbus.codec import decode, encode
from amperio.modbus.errors import RegisterRangeError
from amperio.modbus.registermap import Register, load_map


def reg(type_, count=None, scale=1.0, word_order="big", undefined=None, **kw) -> Register:
    words = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2}.get(type_, count)
    return Register(
        name="x",
        table="holding",
        address=0,
        type=type_,
        count=count or words,
        scale=scale,
        word_order=word_order,
        undefined=undefined,
        access="RW",
        **kw,
    )


orders = st.sampled_from(["big", "little"])


@given(st.integers(0, 0xFFFE), orders)
def test_uint16_values_round_trip(value, order):
    r = reg("uint16", word_order=order, undefined=0xFFFF)
    assert decode(r, encode(r, value)) == value


@given(st.integers(-0x7FFF, 0x7FFF), orders)
def test_int16_values_round_trip(value, order):
    r = reg("int16", word_order=order, undefined=0x8000)
    assert decode(r, encode(r, value)) == value


@given(st.integers(0, 0xFFFFFFFE), orders)
def test_uint32_values_round_trip_in_either_word_order(value, order):
    r = reg("uint32", word_order=order, undefined=0xFFFFFFFF)
    assert decode(r, encode(r, value)) == value


@given(st.integers(-0x7FFFFFFF, 0x7FFFFFFF), orders)
def test_int32_values_round_trip_in_either_word_order(value, order):
    r = reg("int32", word_order=order, undefined=0x80000000)
    assert decode(r, encode(r, value)) == value


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), orders)
def test_float32_values_round_trip_in_either_word_order(value, order):
    r = reg("float32", word_order=order, undefined=0x7FC00000)
    assert decode(r, encode(r, value)) == value


@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=16))
def test_strings_round_trip(text):
    r = reg("string", count=8, undefined=0)
    assert decode(r, encode(r, text)) == text


@given(st.integers(-50000, 50000), st.sampled_from([0.1, 0.01, 0.001]))
def test_scaled_values_round_trip_to_the_scale_resolution(raw, scale):
    r = reg("int32", scale=scale)
    value = round(raw * scale, 3)
    assert decode(r, encode(r, value)) == pytest.approx(value, abs=scale / 10)


@pytest.mark.parametrize(
    ("type_", "words"),
    [
        ("uint16", [0xFFFF]),
        ("int16", [0x8000]),
        ("uint32", [0xFFFF, 0xFFFF]),
        ("int32", [0x8000, 0x0000]),
        ("float32", [0x7FC0, 0x0000]),
    ],
)
def test_undefined_markers_read_as_missing_not_as_numbers(type_, words):
    undefined = {"uint16": 0xFFFF, "int16": 0x8000, "uint32": 0xFFFFFFFF}.get(type_)
    undefined = {"int32": 0x80000000, "float32": 0x7FC00000}.get(type_, undefined)
    assert decode(reg(type_, undefined=undefined), words) is None


def test_any_nan_reads_as_missing_and_an_empty_string_too():
    assert decode(reg("float32"), [0x7FF8, 0x1234]) is None
    assert decode(reg("string", count=4, undefined=0), [0, 0, 0, 0]) is None


def test_none_encodes_to_the_undefined_marker_in_the_register_word_order():
    assert encode(reg("int32", undefined=0x80000000, word_order="little"), None) == [0, 0x8000]


def test_known_register_dumps_of_the_chargepost_map_decode_to_their_values():
    m = load_map()
    # Dumps written down by hand from the map's types, independent of the encoder.
    assert decode(m["vendor"], [0x4144, 0x532D, 0x5445, 0x4300] + [0] * 12) == "ADS-TEC"
    assert decode(m["interface_version"], [0x322E, 0x3600, 0, 0]) == "2.6"
    assert decode(m["bat1_power_kw"], [0xFFDF]) == -3.3
    assert decode(m["bat1_power_setpoint_kw"], [0xFFFF, 0xEA52]) == -55.5
    assert decode(m["grid_frequency_hz"], [5001]) == 50.01
    assert decode(m["grid_import_kw"], [0x4148, 0x0000]) == 12.5
    assert decode(m["grid_import_energy_kwh"], [0x0001, 0x0000]) == 6553.6
    assert decode(m["bat1_soc_pct"], [0xFFFF]) is None


def test_the_word_order_column_swaps_32_bit_words():
    big, little = reg("uint32", word_order="big"), reg("uint32", word_order="little")
    assert encode(big, 0x12345678) == [0x1234, 0x5678]
    assert encode(little, 0x12345678) == [0x5678, 0x1234]
    assert decode(little, [0x5678, 0x1234]) == 0x12345678


@pytest.mark.parametrize(
    ("register", "value"),
    [
        (reg("uint16"), -1),
        (reg("uint16", undefined=0xFFFF), 65535),
        (reg("int16"), 40000),
        (reg("int16", scale=0.1), 3277),
        (reg("uint16", min=0, max=300), 300.5),
        (reg("int32", min=-500, max=500), -501),
        (reg("string", count=2), "too long"),
        (reg("float32"), math.inf),
        (reg("uint16"), "12"),
    ],
)
def test_values_outside_the_register_range_are_refused(register, value):
    with pytest.raises(RegisterRangeError):
        encode(register, value)


def test_float32_encoding_is_ieee754_big_endian():
    words = encode(reg("float32"), 1.5)
    assert struct.pack(">HH", *words) == struct.pack(">f", 1.5)
