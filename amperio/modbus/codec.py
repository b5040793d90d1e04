"""Encoding and decoding of register values: types, word order, scale and undefined values."""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from functools import lru_cache

from amperio.modbus.errors import RegisterRangeError
from amperio.modbus.registermap import Register

Value = int | float | str
_INT_RANGE = {
    "uint16": (0, 0xFFFF),
    "int16": (-0x8000, 0x7FFF),
    "uint32": (0, 0xFFFFFFFF),
    "int32": (-0x80000000, 0x7FFFFFFF),
}


@lru_cache(maxsize=64)
def _decimals(scale: float) -> int:
    """Digits after the point a scaled value can carry (0.01 -> 2), to drop float noise."""
    exponent = Decimal(repr(scale)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


_U32 = struct.Struct(">I")
_F32 = struct.Struct(">f")
_SIGN = {"int16": (0x8000, 0x10000), "int32": (0x80000000, 0x100000000)}


def _ordered(register: Register, words: list[int]) -> list[int]:
    """Words most significant first (the map may say the device sends them little-endian)."""
    return list(reversed(words)) if register.word_order == "little" else list(words)


def _words_of(raw: int, count: int) -> list[int]:
    return [(raw >> (16 * (count - 1 - i))) & 0xFFFF for i in range(count)]


def decode(register: Register, words: list[int]) -> Value | None:
    """The engineering value of `words` read from `register`, or None when undefined."""
    count, kind = register.count, register.type
    if len(words) != count:
        raise ValueError(f"{register.name}: expected {count} words, got {len(words)}")
    if kind == "string":
        text = struct.pack(f">{count}H", *words).rstrip(b"\x00")
        return text.decode("utf-8", errors="replace") or None
    if count == 1:
        raw = words[0]
    elif register.word_order == "little":
        raw = (words[1] << 16) | words[0]
    else:
        raw = (words[0] << 16) | words[1]
    if raw == register.undefined:
        return None
    number: int | float
    if kind == "float32":
        number = _F32.unpack(_U32.pack(raw))[0]
        if math.isnan(number):
            return None
    elif kind in _SIGN:
        sign_bit, span = _SIGN[kind]
        number = raw - span if raw & sign_bit else raw
    else:
        number = raw
    scale = register.scale
    if scale == 1:
        return number
    return round(number * scale, _decimals(scale))


def check_range(register: Register, value: Value) -> None:
    """Raise RegisterRangeError unless `value` can be written to `register` as is."""
    if register.type == "string":
        if not isinstance(value, str):
            raise RegisterRangeError(f"{register.name}: expects text, got {value!r}")
        if len(value.encode("utf-8")) > 2 * register.count:
            raise RegisterRangeError(f"{register.name}: {value!r} longer than {2 * register.count}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise RegisterRangeError(f"{register.name}: expects a number, got {value!r}")
    if register.min is not None and value < register.min:
        raise RegisterRangeError(f"{register.name}: {value} below minimum {register.min}")
    if register.max is not None and value > register.max:
        raise RegisterRangeError(f"{register.name}: {value} above maximum {register.max}")
    if register.type == "float32":
        if math.isinf(value) or abs(value / register.scale) > 3.4028234663852886e38:
            raise RegisterRangeError(f"{register.name}: {value} does not fit float32")
        return
    raw = round(value / register.scale)
    low, high = _INT_RANGE[register.type]
    if not low <= raw <= high:
        raise RegisterRangeError(f"{register.name}: {value} does not fit {register.type}")
    if register.undefined is not None and raw & _mask(register) == register.undefined:
        raise RegisterRangeError(f"{register.name}: {value} is the undefined marker")


def _mask(register: Register) -> int:
    return (1 << (16 * register.count)) - 1


def encode(register: Register, value: Value | None) -> list[int]:
    """The words to write for `value` (None gives the register's undefined marker)."""
    if value is None:
        if register.undefined is None:
            raise RegisterRangeError(f"{register.name}: has no undefined value")
        return _ordered(register, _words_of(register.undefined, register.count))
    check_range(register, value)
    if register.type == "string":
        data = str(value).encode("utf-8").ljust(2 * register.count, b"\x00")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    assert not isinstance(value, str)  # check_range let only numbers through
    if register.type == "float32":
        raw = _U32.unpack(_F32.pack(value / register.scale))[0]
    else:
        raw = round(value / register.scale) & _mask(register)  # two's complement for signed
    if register.count == 1:
        return [raw]
    if register.word_order == "little":
        return [raw & 0xFFFF, raw >> 16]
    return [raw >> 16, raw & 0xFFFF]
