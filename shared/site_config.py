"""The site configuration: its keys, defaults and ranges, and the checks of a sparse document.

One definition for both sides: Enexa validates what operators write with it, and the gateway
reads its defaults. A document is sparse: what is left out (or null) is inherited, finally
from DEFAULTS. Values left open in DEFAULTS (None) are filled by Enexa from the equipment
limits of the controller (battery power and SOC band, grid limit)."""

from __future__ import annotations

import copy
from typing import Any

from .telemetry import MAX_ABS_POWER_KW

# What the gateway does while Enexa is away: follow the last schedule, then the safe local
# policy; or go to the safe local policy at once.
AUTONOMY_MODES = ("follow_schedule_then_safe", "safe")
# The firmware channels a site may follow (Enexa's firmware.choices.Channel has the same).
FIRMWARE_CHANNELS = ("stable", "beta")

DEFAULTS: dict[str, Any] = {
    "modbus": {},
    "watchdog": {"interval_s": 10, "timeout_s": 30},
    "telemetry": {"interval_s": 5, "batch_size": 100},
    "status": {"interval_s": 30},
    "config_poll_interval_s": 60,
    "battery": {
        "soc_min_pct": None,
        "soc_max_pct": None,
        "reserve_pct": None,
        "max_charge_kw": None,
        "max_discharge_kw": None,
    },
    "grid": {"limit_kw": None},
    "autonomy": {"enter_after_s": 60, "mode": "follow_schedule_then_safe"},
    "setpoint_validity_s": 300,
    "firmware": {"channel": "stable"},
    # Unset: no tariff; the optimizer then plans only slots that have prices (PUT .../prices).
    "tariff": {
        "import_price": None,
        "export_price": None,
        "peak_import_price": None,
        "peak_export_price": None,
        "peak_from_hour": None,
        "peak_to_hour": None,
        "demand_charge_per_kw": None,
    },
}

# The SOC band and reserve a battery gets when none is set (within the equipment's band).
DEFAULT_SOC_BAND_PCT = (10.0, 90.0)
DEFAULT_RESERVE_PCT = 20.0

# How many ChargePosts (Modbus units) one site's `modbus` setting may list.
MAX_MODBUS_UNITS = 16

# A rule is a tuple: ("int", lo, hi), ("number", lo, hi), ("host",) or ("choice", options).
Rule = tuple[Any, ...]


def _int(lo: int, hi: int) -> Rule:
    return ("int", lo, hi)


def _num(lo: float, hi: float) -> Rule:
    return ("number", lo, hi)


def choice(options: tuple[str, ...]) -> Rule:
    return ("choice", options)


def host() -> Rule:
    return ("host",)


# Prices per kWh (any currency: the one of the site's prices), within what a market may
# reach; negative prices happen.
PRICE_RANGE = (-100.0, 100.0)

# section -> field -> rule; a top-level scalar has a rule instead of a section. Every key here
# changes what the gateway does, or what Enexa decides for it (tests/test_settings_honoured.py
# checks each one); a setting nothing reads is refused rather than accepted and ignored.
# `tariff` is read by Enexa's optimizer (enexa.optimizer.services.tariff_prices): the price of
# a slot no `PUT /v1/sites/{id}/prices` covers, in two hour-of-day bands of the site's local
# time (the peak band [peak_from_hour, peak_to_hour), wrapping midnight when from > to, and the
# rest of the day), and the demand charge per kW of the horizon's peak import.
RULES: dict[str, Any] = {
    # One ChargePost's address, or a list of them (several ChargePosts: unit_list_errors).
    "modbus": {"host": host(), "port": _int(1, 65535), "device_id": _int(0, 247)},
    "watchdog": {"interval_s": _int(2, 60), "timeout_s": _int(4, 600)},
    "telemetry": {"interval_s": _int(1, 3600), "batch_size": _int(1, 1000)},
    "status": {"interval_s": _int(5, 3600)},
    "config_poll_interval_s": _int(1, 3600),  # a cheap version poll: every second is fine
    "battery": {
        "soc_min_pct": _num(0, 100),
        "soc_max_pct": _num(0, 100),
        "reserve_pct": _num(0, 100),
        "max_charge_kw": _num(0, MAX_ABS_POWER_KW),
        "max_discharge_kw": _num(0, MAX_ABS_POWER_KW),
    },
    "grid": {"limit_kw": _num(0.1, MAX_ABS_POWER_KW)},
    "autonomy": {
        "enter_after_s": _int(0, 86_400),
        "mode": choice(AUTONOMY_MODES),
        # Grid import the safe policy keeps below the limit; unset: 5 % of it, at least 2 kW.
        "margin_kw": _num(0, 10_000),
    },
    "setpoint_validity_s": _int(1, 86_400),
    "firmware": {"channel": choice(FIRMWARE_CHANNELS)},
    "tariff": {
        "import_price": _num(*PRICE_RANGE),
        "export_price": _num(*PRICE_RANGE),
        "peak_import_price": _num(*PRICE_RANGE),
        "peak_export_price": _num(*PRICE_RANGE),
        "peak_from_hour": _int(0, 23),
        "peak_to_hour": _int(0, 24),
        "demand_charge_per_kw": _num(0, 10_000),
    },
}


def check_value(rule: Rule, value: Any) -> str | None:
    """The message for a value breaking `rule`, or None."""
    kind = rule[0]
    if kind in ("int", "number"):
        ok_type: tuple[type, ...] = (int,) if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            return "Must be an integer." if kind == "int" else "Must be a number."
        if value != value or not rule[1] <= value <= rule[2]:  # NaN fails too
            return f"Must be between {rule[1]} and {rule[2]}."
    elif kind == "host":
        if not isinstance(value, str) or not 0 < len(value) <= 253 or " " in value:
            return "Must be a host name or IP address."
    elif kind == "choice" and value not in rule[1]:
        return "Must be one of: " + ", ".join(rule[1]) + "."
    return None


def validate(document: Any) -> dict[str, list[str]]:
    """Field errors of a sparse settings document (types, ranges, unknown keys); {} when valid."""
    if not isinstance(document, dict):
        return {"non_field_errors": ["Must be an object."]}
    errors: dict[str, list[str]] = {}
    for key, value in document.items():
        if value is None:  # not set: inherited
            continue
        for path, message in section_errors(str(key), RULES.get(key), value):
            errors.setdefault(path, []).append(message)
    return errors


def section_errors(key: str, rule: Any, value: Any) -> list[tuple[str, str]]:
    """(path, message) for each problem of one section (or top-level value) `value` under `key`
    checked against its `rule` (a section's rules, a rule, or None for an unknown key)."""
    if rule is None:
        return [(key, "Unknown setting.")]
    if key == "modbus" and isinstance(value, list):
        return unit_list_errors(key, rule, value)
    if isinstance(rule, tuple):
        message = check_value(rule, value)
        return [(key, message)] if message else []
    if not isinstance(value, dict):
        return [(key, "Must be an object.")]
    found = []
    for name, item in value.items():
        path = f"{key}.{name}"
        if name not in rule:
            found.append((path, "Unknown setting."))
        elif item is not None and (message := check_value(rule[name], item)):
            found.append((path, message))
    return found


def unit_list_errors(key: str, rule: dict[str, Rule], units: list[Any]) -> list[tuple[str, str]]:
    """(path, message) for each problem of a list of ChargePost addresses (`modbus` as a list,
    one object per unit): 1 to MAX_MODBUS_UNITS units, each an object with its own host (a list
    replaces whole, so no unit can inherit a host), paths carrying the unit's index."""
    if not 1 <= len(units) <= MAX_MODBUS_UNITS:
        return [(key, f"Must list between 1 and {MAX_MODBUS_UNITS} units.")]
    found = []
    for index, unit in enumerate(units):
        path = f"{key}.{index}"
        if not isinstance(unit, dict):
            found.append((path, "Must be an object."))
            continue
        found += section_errors(path, rule, unit)
        if unit.get("host") is None:
            found.append((f"{path}.host", "Required for each unit of a list."))
    return found


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7396): nested objects merge, null removes, anything else (a list
    too, such as several ChargePosts under `modbus`) replaces."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merged(*documents: dict[str, Any]) -> dict[str, Any]:
    """DEFAULTS with each sparse document laid over it in turn (site, then controller); the
    values left open stay None, and a section a document removes comes back as its defaults."""
    out = copy.deepcopy(DEFAULTS)
    for document in documents:
        out = merge(out, document)
        for key, value in DEFAULTS.items():
            # A section set to a list (several ChargePosts under `modbus`) stands as it is.
            if isinstance(value, dict) and not isinstance(out.get(key), list):
                out[key] = {**value, **out.get(key, {})}
    return out
