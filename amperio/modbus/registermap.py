"""The register map: one frozen Register per CSV row, validated on load, and its read plan."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAPS_DIR = Path(__file__).parent / "maps"
DEFAULT_MAP = MAPS_DIR / "chargepost-2.6.csv"

TABLES = ("holding", "input")
ACCESS = ("RO", "RW", "WO")
WORD_ORDERS = ("big", "little")
# Registers each fixed-size type occupies; strings take whatever count the row gives.
TYPE_WORDS = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2}
TYPES = (*TYPE_WORDS, "string")
COLUMNS = (
    "name",
    "table",
    "address",
    "type",
    "count",
    "scale",
    "unit",
    "access",
    "word_order",
    "undefined",
    "min",
    "max",
    "description",
)
MAX_READ_COUNT = 125  # registers in one read request (Modbus application protocol)
DEFAULT_MAX_GAP = 16  # unused registers worth reading through to save a request


class RegisterMapError(ValueError):
    """The register map file is malformed or inconsistent."""


@dataclass(frozen=True)
class Register:
    """One register (or group of registers holding one value) in the map."""

    name: str
    table: str
    address: int
    type: str
    count: int
    scale: float = 1.0
    unit: str = ""
    access: str = "RO"
    word_order: str = "big"
    undefined: int | None = None  # raw value (all words as one unsigned int) meaning "no value"
    min: float | None = None
    max: float | None = None
    description: str = ""

    @property
    def end(self) -> int:
        """First address after this register."""
        return self.address + self.count

    @property
    def readable(self) -> bool:
        return self.access in ("RO", "RW")

    @property
    def writable(self) -> bool:
        return self.access in ("RW", "WO")


@dataclass(frozen=True)
class ReadBlock:
    """One read request: a contiguous address range in one table and the registers it covers."""

    table: str
    address: int
    count: int
    registers: tuple[Register, ...] = field(default_factory=tuple)


class RegisterMap:
    """All registers of a device model, by name, with the read plan for snapshots."""

    def __init__(self, registers: Iterable[Register], source: str = "<registers>"):
        self.source = source
        self.registers: dict[str, Register] = {}
        for register in registers:
            _check_register(register, source)
            if register.name in self.registers:
                raise RegisterMapError(f"{source}: duplicate register name {register.name!r}")
            self.registers[register.name] = register
        _check_overlaps(self.registers.values(), source)

    def __getitem__(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise KeyError(f"no register named {name!r} in {self.source}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.registers

    def __iter__(self) -> Iterator[Register]:
        return iter(self.registers.values())

    def __len__(self) -> int:
        return len(self.registers)

    def readable(self) -> list[Register]:
        return [r for r in self.registers.values() if r.readable]

    def read_plan(
        self, names: Iterable[str] | None = None, max_gap: int = DEFAULT_MAX_GAP
    ) -> list[ReadBlock]:
        """Coalesce readable registers into the fewest blocks of at most 125 registers.

        Registers closer than `max_gap` unused addresses share a block, per table."""
        wanted = self.readable() if names is None else [self[n] for n in names]
        blocks: list[ReadBlock] = []
        for table in TABLES:
            current: list[Register] = []
            end = 0
            for register in sorted((r for r in wanted if r.table == table), key=_address):
                if current:
                    start = current[0].address
                    if register.address - end <= max_gap and register.end - start <= MAX_READ_COUNT:
                        current.append(register)
                        end = max(end, register.end)
                        continue
                    blocks.append(_block(table, current))
                current, end = [register], register.end
            if current:
                blocks.append(_block(table, current))
        return blocks


def _address(register: Register) -> int:
    return register.address


def _block(table: str, registers: list[Register]) -> ReadBlock:
    start = registers[0].address
    return ReadBlock(table, start, max(r.end for r in registers) - start, tuple(registers))


def _check_register(r: Register, source: str) -> None:
    where = f"{source}: register {r.name!r}"
    if not r.name or not r.name.isidentifier():
        raise RegisterMapError(f"{where}: name must be an identifier")
    if r.table not in TABLES:
        raise RegisterMapError(f"{where}: table {r.table!r} is not one of {TABLES}")
    if r.type not in TYPES:
        raise RegisterMapError(f"{where}: type {r.type!r} is not one of {TYPES}")
    if r.access not in ACCESS:
        raise RegisterMapError(f"{where}: access {r.access!r} is not one of {ACCESS}")
    if r.word_order not in WORD_ORDERS:
        raise RegisterMapError(f"{where}: word_order {r.word_order!r} is not big or little")
    if not 0 <= r.address <= 0xFFFF or r.end > 0x10000:
        raise RegisterMapError(f"{where}: address {r.address} (+{r.count}) outside 0..65535")
    expected = TYPE_WORDS.get(r.type)
    if expected is not None and r.count != expected:
        raise RegisterMapError(f"{where}: count {r.count} does not fit {r.type} ({expected})")
    if r.type == "string" and not 1 <= r.count <= MAX_READ_COUNT:
        raise RegisterMapError(f"{where}: string count {r.count} outside 1..{MAX_READ_COUNT}")
    if r.scale <= 0:
        raise RegisterMapError(f"{where}: scale must be positive")
    if r.undefined is not None and not 0 <= r.undefined < 1 << (16 * r.count):
        raise RegisterMapError(f"{where}: undefined value does not fit {r.count} register(s)")
    if r.min is not None and r.max is not None and r.min > r.max:
        raise RegisterMapError(f"{where}: min {r.min} > max {r.max}")


def _check_overlaps(registers: Iterable[Register], source: str) -> None:
    for table in TABLES:
        previous: Register | None = None
        for register in sorted((r for r in registers if r.table == table), key=_address):
            if previous is not None and register.address < previous.end:
                raise RegisterMapError(
                    f"{source}: {register.name!r} at {table} {register.address} overlaps "
                    f"{previous.name!r} ({previous.address}..{previous.end - 1})"
                )
            previous = register


def _number(text: str) -> float | None:
    text = text.strip()
    return None if text == "" else float(text)


def _parse_row(row: dict[str, str], source: str, line: int) -> Register:
    try:
        undefined = row["undefined"].strip()
        return Register(
            name=row["name"].strip(),
            table=row["table"].strip(),
            address=int(row["address"], 0),
            type=row["type"].strip(),
            count=int(row["count"], 0),
            scale=float(row["scale"] or 1),
            unit=row["unit"].strip(),
            access=row["access"].strip(),
            word_order=(row["word_order"] or "big").strip(),
            undefined=int(undefined, 0) if undefined else None,
            min=_number(row["min"]),
            max=_number(row["max"]),
            description=row["description"].strip(),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise RegisterMapError(f"{source} line {line}: {exc}") from exc


def load_map(path: str | Path | None = None) -> RegisterMap:
    """Read and validate a register map CSV (default: the ChargePost interface 2.6 map)."""
    path = Path(path) if path is not None else DEFAULT_MAP
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise RegisterMapError(f"{path.name}: missing columns {sorted(missing)}")
        registers = [_parse_row(row, path.name, n) for n, row in enumerate(reader, start=2)]
    return RegisterMap(registers, source=path.name)
