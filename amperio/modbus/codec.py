"""Encoding and decoding of register values: types, word order, scale and undefined values."""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from functools import lru_cache

from amperio.modbus.errors import RegisterRangeError
from amperio.modbus.registermap import Register

Value = int | float | str
_STRUCT = {"uint16": "H", "int16": "h", "uint32": "I", "int32": "i", "float32": "f"}
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


def _ordered(register: Register, words: list[int]) -> list[int]:
    """Words most significant first (the map may say the device sends them little-endian)."""
    return list(reversed(words)) if register.word_order == "little" else list(words)


def _raw_of(words: list[int]) -> int:
    raw = 0
    for word in words:
        raw = (raw << 16) | word
    return raw


def _words_of(raw: int, count: int) -> list[int]:
    return [(raw >> (16 * (count - 1 - i))) & 0xFFFF for i in range(count)]


def decode(register: Register, words: list[int]) -> Value | None:
    """The engineering value of `words` read from `register`, or None when undefined."""
    if len(words) != register.count:
        raise ValueError(f"{register.name}: expected {register.count} words, got {len(words)}")
    ordered = _ordered(register, words) if register.type != "string" else list(words)
    raw = _raw_of(ordered)
    if register.undefined is not None and raw == register.undefined:
        return None
    if register.type == "string":
        text = b"".join(w.to_bytes(2, "big") for w in words).rstrip(b"\x00")
        return text.decode("utf-8", errors="replace") or None
    fmt = ">" + _STRUCT[register.type]
    number = struct.unpack(fmt, raw.to_bytes(2 * register.count, "big"))[0]
    if register.type == "float32":
        if math.isnan(number):
            return None
        if register.scale == 1:
            return number
    if register.scale == 1:
        return int(number)
    return round(number * register.scale, _decimals(register.scale))


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
    if register.type == "float32":
        number: float | int = float(value) / register.scale
    else:
        number = round(value / register.scale)
    data = struct.pack(">" + _STRUCT[register.type], number)
    return _ordered(register, _words_of(int.from_bytes(data, "big"), register.count))
