"""Which ChargePosts this gateway drives (the configuration's Modbus addresses, else Settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
            int(unit.get("port", settings.modbus_port)),
            int(unit.get("device_id", settings.modbus_device_id)),
        )
        for unit in units
        if isinstance(unit, dict) and unit.get("host")
    ]
    return found or [
        Endpoint(settings.modbus_host, settings.modbus_port, settings.modbus_device_id)
    ]


def connect(endpoint: Endpoint, timeout_s: float = 2.0) -> Any:
    """A ChargePostClient for `endpoint` (imported here: the Modbus stack loads only when used)."""
    from amperio.modbus.client import ChargePostClient

    return ChargePostClient(
        endpoint.host, endpoint.port, device_id=endpoint.device_id, timeout_s=timeout_s
    )
