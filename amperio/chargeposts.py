"""Which ChargePosts this gateway drives (configured, else Settings), and them as one client."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amperio.modbus import registers
from amperio.modbus.errors import RegisterRangeError
from amperio.settings import Settings


@dataclass(frozen=True)
class Endpoint:
    """One ChargePost's Modbus/TCP address."""

    host: str
    port: int
    device_id: int = 1


def endpoints(settings: Settings, config: dict[str, Any]) -> list[Endpoint]:
    """`settings.modbus` of the applied configuration (one object or a list), else Settings."""
    modbus = (config.get("settings") or {}).get("modbus")
    units = modbus if isinstance(modbus, list) else [modbus] if modbus else []
    found = [
        Endpoint(
            unit["host"],
            int(_given(unit.get("port"), settings.modbus_port)),
            int(_given(unit.get("device_id"), settings.modbus_device_id)),
        )
        for unit in units
        if isinstance(unit, dict) and unit.get("host")
    ]
    return found or [
        Endpoint(settings.modbus_host, settings.modbus_port, settings.modbus_device_id)
    ]


def _given(value: Any, default: int) -> Any:
    """A unit's value, or the default where it is left out or null (inherited)."""
    return default if value is None else value


def connect(endpoint: Endpoint, timeout_s: float = 2.0) -> Any:
    """A ChargePostClient for `endpoint` (imported here: the Modbus stack loads only when used)."""
    from amperio.modbus.client import ChargePostClient

    return ChargePostClient(
        endpoint.host, endpoint.port, device_id=endpoint.device_id, timeout_s=timeout_s
    )


# A ChargePost holds two battery units and one charger (amperio.modbus.registers); on a site of
# several, unit k (from 0) holds the site's BAT(2k+1), BAT(2k+2) and CHG(k+1), the numbering
# the telemetry reading uses, so every id is unique across the site.
_PER_UNIT = {"bat": len(registers.BATTERY_UNITS), "chg": 1}
_NUMBERED = re.compile(r"^(bat|chg)(\d+)_(.+)$")
# What each ChargePost meters at its own feed, so the site's is their sum (as in the reading);
# its grid limit share too.
_SITE_TOTALS = (
    registers.SITE_GRID_LIMIT,
    "grid_import_kw",
    "grid_export_kw",
    "site_load_kw",
    "grid_import_energy_kwh",
    "grid_export_energy_kwh",
)


class SiteClient:
    """The ChargePosts of a site as one register client, in the site's numbering: `bat3_*` is
    the first battery of the second unit, `chg2_*` its charger. A command (amperio.dispatch)
    then names the site's units and each write goes to the ChargePost that holds it.

    The grid limit is one number for the site, but `site_grid_limit_kw` is what one unit keeps
    its own import below (each ChargePost meters its own feed: the reading sums their
    imports), so each unit gets an equal share and the site's import stays within the limit
    even when every unit draws its full share; read back, the shares add up to the site's
    limit again. Other unit-wide registers (watchdog, alarms) are the first unit's: the
    watchdog beats each ChargePost on its own (amperio.gateway.watchdog_beat)."""

    def __init__(self, clients: Sequence[Any]):
        self.clients = list(clients)
        self.battery_units = tuple(
            f"BAT{n}" for n in range(1, _PER_UNIT["bat"] * len(self.clients) + 1)
        )

    def _route(self, name: str) -> list[tuple[int, str]]:
        """(unit index, that unit's register name) for a site register name."""
        if name == registers.SITE_GRID_LIMIT:
            return [(k, name) for k in range(len(self.clients))]
        match = _NUMBERED.match(name)
        if not match:
            return [(0, name)]
        kind, number, field = match.group(1), int(match.group(2)), match.group(3)
        per_unit = _PER_UNIT[kind]
        unit, local = divmod(number - 1, per_unit)
        if number < 1 or unit >= len(self.clients):
            raise RegisterRangeError(f"{name}: no such unit on this site")
        return [(unit, f"{kind}{local + 1}_{field}")]

    def site_snapshot(self, snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """One snapshot in the site's numbering from each unit's (in unit order); what the
        units meter on their own feeds summed."""
        out = {name: v for name, v in snapshots[0].items() if not _NUMBERED.match(name)}
        for k, snap in enumerate(snapshots):
            for name, value in snap.items():
                if match := _NUMBERED.match(name):
                    kind, number, field = match.group(1), int(match.group(2)), match.group(3)
                    out[f"{kind}{k * _PER_UNIT[kind] + number}_{field}"] = value
        for name in _SITE_TOTALS:
            out[name] = _site_total([s.get(name) for s in snapshots])
        return out

    def read_snapshot(self) -> dict[str, Any]:
        return self.site_snapshot([c.read_snapshot() for c in self.clients])

    def read(self, names: Iterable[str]) -> dict[str, Any]:
        wanted = list(names)
        asked: dict[int, set[str]] = {}
        for name in wanted:
            for unit, local in self._route(name):
                asked.setdefault(unit, set()).add(local)
        answers = {unit: self.clients[unit].read(sorted(n)) for unit, n in asked.items()}
        return {name: self._joined(name, answers) for name in wanted}

    def _joined(self, name: str, answers: dict[int, dict[str, Any]]) -> Any:
        values = [answers[unit].get(local) for unit, local in self._route(name)]
        return _site_total(values) if name == registers.SITE_GRID_LIMIT else values[0]

    def write(self, name: str, value: Any) -> Any:
        return self.write_many({name: value})[name]

    def write_many(self, values: Mapping[str, Any], read_back: bool = True) -> dict[str, Any]:
        """Write each value to the unit that holds it (the grid limit as each unit's share);
        every name is routed before the first write, so an unknown unit writes nothing."""
        per_unit: dict[int, dict[str, Any]] = {}
        for name, value in values.items():
            routes = self._route(name)
            shares = _shares(value, len(routes)) if len(routes) > 1 else [value]
            for (unit, local), share in zip(routes, shares, strict=True):
                per_unit.setdefault(unit, {})[local] = share
        answers = {
            unit: self.clients[unit].write_many(writes, read_back=read_back)
            for unit, writes in sorted(per_unit.items())
        }
        return {name: self._joined(name, answers) for name in values}

    def close(self) -> None:
        """The clients belong to the Gateway, which closes them."""


def _site_total(shares: list[Any]) -> float | None:
    """The site's grid limit from each unit's share; None unless every unit gave one."""
    numbers = [float(v) for v in shares if isinstance(v, (int, float))]
    return round(sum(numbers), 3) if len(numbers) == len(shares) else None


def _shares(value: Any, count: int) -> list[Any]:
    """`value` in `count` equal shares at the register's 0.1 kW resolution, the odd tenths to
    the first units, so the shares add up to exactly `value` (read back, it is what was
    written). A value that is no number goes to each unit as it is, for it to refuse."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [value] * count
    base, extra = divmod(round(value * 10), count)
    return [(base + (1 if k < extra else 0)) / 10 for k in range(count)]


def site_client(clients: Sequence[Any]) -> Any:
    """The one client commands and leases use: a single ChargePost's own, else a SiteClient."""
    return clients[0] if len(clients) == 1 else SiteClient(clients)
