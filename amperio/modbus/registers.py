"""The ChargePost register vocabulary: how the map names each unit's registers, in one place.

A ChargePost holds two battery units (`bat1_*`, `bat2_*`) and one charger (`chg1_*`); the site
calls its units BAT1, BAT2 and CHG1. Every module that names a per-unit register builds the
name here, so a renamed register in the map changes one file."""

from __future__ import annotations

# The battery units of a ChargePost, as the site names them.
BATTERY_UNITS = ("BAT1", "BAT2")
# The grid connection limit the unit enforces (writable).
SITE_GRID_LIMIT = "site_grid_limit_kw"
# What the hardware watchdog reads: a changing counter, and its timeout.
WATCHDOG_HEARTBEAT = "watchdog_heartbeat"
WATCHDOG_TIMEOUT = "watchdog_timeout_s"

_BATTERY_SETPOINT = "power_setpoint_kw"
_CHARGER_LIMIT = "power_limit_kw"


def battery(unit: str | int, field: str) -> str:
    """A battery unit's register: `battery(1, "soc_pct")` and `battery("BAT1", "soc_pct")` are
    both `bat1_soc_pct`."""
    prefix = f"bat{unit}" if isinstance(unit, int) else unit.lower()
    return f"{prefix}_{field}"


def charger(unit: str | int, field: str) -> str:
    """A charger's register: `charger(1, "power_kw")` and `charger("CHG1", "power_kw")` are
    both `chg1_power_kw`."""
    prefix = f"chg{unit}" if isinstance(unit, int) else unit.lower()
    return f"{prefix}_{field}"


def battery_setpoint(unit: str | int) -> str:
    """The unit's power setpoint (kW, discharge positive)."""
    return battery(unit, _BATTERY_SETPOINT)


def battery_allowed(unit: str | int, direction: str) -> str:
    """What the unit allows now in `direction` ("charge" or "discharge"), in kW."""
    return battery(unit, f"allowed_{direction}_kw")


def battery_reversion_power(unit: str | int) -> str:
    """The setpoint the unit falls back to when no write came within its reversion timeout."""
    return battery(unit, "setpoint_reversion_kw")


def battery_reversion_timeout(unit: str | int) -> str:
    """How long the unit keeps a setpoint without a fresh write (s)."""
    return battery(unit, "setpoint_reversion_timeout_s")


def charger_limit(unit: str | int) -> str:
    """The charger's power limit (kW)."""
    return charger(unit, _CHARGER_LIMIT)


def battery_unit_of(register: str) -> str | None:
    """The unit prefix (`bat1`) of a battery setpoint register; None for any other register."""
    if register.startswith("bat") and register.endswith(f"_{_BATTERY_SETPOINT}"):
        return register.split("_", 1)[0]
    return None


def charger_of_limit(register: str) -> str | None:
    """The charger (`CHG1`) whose power limit `register` is; None for any other register."""
    if register.startswith("chg") and register.endswith(f"_{_CHARGER_LIMIT}"):
        return register.split("_", 1)[0].upper()
    return None
