"""Configuration rules that need the equipment: the limits a controller's equipment sets, the
settings left open filled from them, and filled settings checked against them and each other."""

from __future__ import annotations

import copy
from typing import Any

from enexa.registry.choices import EquipmentKind
from enexa.registry.models import Controller, Site
from shared.site_config import DEFAULT_RESERVE_PCT, DEFAULT_SOC_BAND_PCT


def validate_effective(settings: dict, limits: dict) -> dict[str, list[str]]:
    """Field errors of filled settings against each other and the equipment limits."""
    errors: dict[str, list[str]] = {}

    def add(path: str, message: str) -> None:
        errors.setdefault(path, []).append(message)

    battery, band = settings["battery"], limits["battery"]
    if battery["soc_min_pct"] >= battery["soc_max_pct"]:
        add("battery.soc_min_pct", "Must be below battery.soc_max_pct.")
    if battery["soc_min_pct"] < band["soc_min_pct"]:
        add("battery.soc_min_pct", f"Must not be below the equipment's {band['soc_min_pct']} %.")
    if battery["soc_max_pct"] > band["soc_max_pct"]:
        add("battery.soc_max_pct", f"Must not exceed the equipment's {band['soc_max_pct']} %.")
    if not battery["soc_min_pct"] <= battery["reserve_pct"] <= battery["soc_max_pct"]:
        add("battery.reserve_pct", "Must lie within the SOC band (soc_min_pct-soc_max_pct).")
    has_battery = bool(band["units"]) or band["max_charge_kw"] or band["max_discharge_kw"]
    for name in ("max_charge_kw", "max_discharge_kw"):
        # A controller without a battery ignores the site's battery power settings.
        if has_battery and battery[name] > band[name]:
            add(
                f"battery.{name}",
                f"Must not exceed what the battery units deliver: {band[name]} kW.",
            )
    if settings["grid"]["limit_kw"] > limits["grid"]["limit_kw"]:
        add(
            "grid.limit_kw",
            f"Must not exceed the site's grid connection limit: {limits['grid']['limit_kw']} kW.",
        )
    watchdog = settings["watchdog"]
    if watchdog["timeout_s"] < 2 * watchdog["interval_s"]:
        # The gateway's heartbeat must come at half the hardware timeout or more often.
        add("watchdog.timeout_s", "Must be at least twice watchdog.interval_s.")
    modbus = settings.get("modbus", {})
    # A list of units is checked whole by shared.site_config (each unit names its host); one
    # object may take its host from the site while a controller sets only the port.
    if isinstance(modbus, dict) and modbus and "host" not in modbus:
        add("modbus.host", "Required when a Modbus port or device id is set.")
    return errors


def fill_open_settings(raw: dict, limits: dict) -> dict:
    """Settings left open take their value from the limits."""
    settings = copy.deepcopy(raw)
    battery, band = settings["battery"], limits["battery"]
    if battery["soc_min_pct"] is None:
        battery["soc_min_pct"] = max(DEFAULT_SOC_BAND_PCT[0], band["soc_min_pct"])
    if battery["soc_max_pct"] is None:
        battery["soc_max_pct"] = min(DEFAULT_SOC_BAND_PCT[1], band["soc_max_pct"])
    if battery["reserve_pct"] is None:
        battery["reserve_pct"] = min(
            max(DEFAULT_RESERVE_PCT, battery["soc_min_pct"]), battery["soc_max_pct"]
        )
    for name in ("max_charge_kw", "max_discharge_kw"):
        if battery[name] is None:
            battery[name] = band[name]
    if settings["grid"]["limit_kw"] is None:
        settings["grid"]["limit_kw"] = limits["grid"]["limit_kw"]
    if not settings["modbus"]:  # the gateway's environment decides
        del settings["modbus"]
    return settings


def _power(item, name: str) -> float | None:
    value = getattr(item, name)
    return value if value is not None else item.max_power_kw


def limits_for_site(site: Site) -> dict:
    """What the site's equipment can do, from the registry specs (one query)."""
    return limits_from(site, list(site.equipment.all()))


def limits_for_controller(controller: Controller, site_equipment: list | None = None) -> dict:
    """The limits of the equipment a controller runs: its assigned assets (a battery system
    with its units, a unit with its system), or the whole site when none are assigned."""
    site = controller.site
    equipment = site_equipment if site_equipment is not None else list(site.equipment.all())
    assigned = {asset.pk for asset in controller.assets.all()}  # prefetched by callers in loops
    if not assigned:
        return limits_from(site, equipment)
    chosen = {e.pk for e in equipment if e.pk in assigned or e.parent_id in assigned}
    chosen |= {e.parent_id for e in equipment if e.pk in chosen and e.parent_id}
    return limits_from(site, [e for e in equipment if e.pk in chosen])


def limits_from(site: Site, equipment: list) -> dict:
    systems = [e for e in equipment if e.kind == EquipmentKind.BATTERY_SYSTEM]
    units = [e for e in equipment if e.kind == EquipmentKind.BATTERY_UNIT]
    unit_limits = {}
    for unit in units:
        unit_limits[unit.code] = {
            "max_charge_kw": _power(unit, "max_charge_kw") or 0.0,
            "max_discharge_kw": _power(unit, "max_discharge_kw") or 0.0,
            "capacity_kwh": unit.capacity_kwh,
            "soc_min_pct": unit.soc_min_pct if unit.soc_min_pct is not None else 0.0,
            "soc_max_pct": unit.soc_max_pct if unit.soc_max_pct is not None else 100.0,
        }
    battery: dict[str, Any] = {}
    for name in ("max_charge_kw", "max_discharge_kw"):
        from_units = sum(u[name] for u in unit_limits.values()) if units else None
        from_system = [p for p in (_power(s, name) for s in systems) if p is not None]
        candidates = ([from_units] if from_units is not None else []) + from_system
        battery[name] = float(min(candidates)) if candidates else 0.0
    capacities = [u.capacity_kwh for u in units if u.capacity_kwh is not None] or [
        s.capacity_kwh for s in systems if s.capacity_kwh is not None
    ]
    battery["capacity_kwh"] = float(sum(capacities)) if capacities else 0.0
    batteries = systems + units
    mins = [b.soc_min_pct for b in batteries if b.soc_min_pct is not None]
    maxs = [b.soc_max_pct for b in batteries if b.soc_max_pct is not None]
    battery["soc_min_pct"] = float(max(mins)) if mins else 0.0
    battery["soc_max_pct"] = float(min(maxs)) if maxs else 100.0
    battery["units"] = unit_limits
    chargers = {
        e.code: {"max_power_kw": e.max_power_kw}
        for e in equipment
        if e.kind == EquipmentKind.CHARGER
    }
    return {
        "battery": battery,
        "chargers": chargers,
        "grid": {"limit_kw": float(site.grid_connection_limit_kw)},
    }
