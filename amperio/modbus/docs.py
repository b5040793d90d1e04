"""Renders docs/modbus.md from the register map CSV: `python -m amperio.modbus.docs [--check]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amperio.modbus.registermap import COLUMNS, DEFAULT_MAP, Register, RegisterMap, load_map

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "modbus.md"

INTRO = """\
# ChargePost Modbus register map (interface {version})

Generated from `amperio/modbus/maps/{csv}` by `python -m amperio.modbus.docs`; do not edit by
hand (a test compares this file with the generated text).

ADS-TEC publishes no public register map for the ChargePost, so this map is **modelled on the
public SunSpec conventions** and will be replaced by the vendor's v2.6 map when we have it
(swapping the CSV needs no code change):

| Block | Modelled on | Registers |
|---|---|---|
| Identification | SunSpec model 1 (common) | `vendor` … `serial` |
| System, watchdog | SunSpec model 715 (heartbeats) | `system_state` … `site_grid_limit_kw` |
| Battery units | SunSpec model 802 (battery); setpoint and reversion: 704 | `bat1_*`, `bat2_*` |
| Charger | common wallbox maps (power limit, failsafe timeout and failsafe power) | `chg1_*` |
| Grid meter | SunSpec model 203 (three-phase meter) | `grid_*`, `site_load_kw` (input registers) |

Conventions:

- Modbus/TCP, port 502, unit id 1; function codes 03 (holding), 04 (input), 06 (one register)
  and 16 (several registers). Addresses are 0-based protocol addresses. Any other function
  code (coils 01/05/15, mask write 22, read/write 23, …) is answered with exception 01
  (illegal function) and changes nothing.
- Bytes within a word are big-endian; 32-bit values are sent most significant word first
  unless `word_order` says `little`. Strings are ASCII, two characters a word, padded with NUL.
- Value = raw × scale. Power is positive for discharge and import, negative for charge and export.
- Undefined values read as missing, never as numbers: `0xFFFF` (uint16), `0x8000` (int16),
  `0xFFFFFFFF` (uint32), `0x80000000` (int32), NaN (float32), all NUL (string).
- Writes outside min … max are refused (by the client before sending, by the unit with
  exception 03); writes to RO registers are refused with exception 02.
- Watchdog: write `watchdog_heartbeat` within `watchdog_timeout_s`, or the unit falls back to
  its safe state (battery setpoints 0, charger limit = `chg1_fallback_limit_kw`, `alarm_bits`
  bit0, `operating_mode` 2) until a fresh heartbeat **and** a new setpoint arrive. Only a
  value different from the last one written is a heartbeat: repeating it does not count.
- A full telemetry snapshot takes {requests} read requests ({plan}).
"""


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:g}"


def _row(register: Register) -> str:
    undefined = "" if register.undefined is None else f"0x{register.undefined:X}"
    cells = [
        f"`{register.name}`",
        register.table,
        str(register.address),
        register.type,
        str(register.count),
        _number(register.scale),
        register.unit,
        register.access,
        register.word_order,
        undefined,
        _number(register.min),
        _number(register.max),
        register.description.replace("|", "\\|"),
    ]
    return "| " + " | ".join(cells) + " |"


def render(register_map: RegisterMap | None = None, csv_name: str | None = None) -> str:
    """The Markdown page for a register map."""
    register_map = register_map or load_map()
    plan = register_map.read_plan()
    text = INTRO.format(
        version=Path(register_map.source).stem.rsplit("-", 1)[-1],  # <model>-<interface>.csv
        csv=csv_name or register_map.source,
        requests=len(plan),
        plan=", ".join(f"{b.table} {b.address}+{b.count}" for b in plan),
    )
    header = [column.replace("_", " ") for column in COLUMNS]  # the CSV's own columns
    lines = ["", "## Registers", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    ordered = sorted(register_map, key=lambda r: (r.table != "holding", r.address))
    lines += [_row(r) for r in ordered]
    return text + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amperio.modbus.docs", description=__doc__)
    parser.add_argument("--map", type=Path, default=DEFAULT_MAP)
    parser.add_argument("--out", type=Path, default=DOC_PATH)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render(load_map(args.map))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m amperio.modbus.docs", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
