"""The telemetry reading: what a gateway reports of a site at one moment (contract shape)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .fields import Reader, drop_none, format_timestamp, parse

# Far beyond any ChargePost site: a value above this is a unit mistake (W instead of kW), not
# physics. Enexa additionally checks powers against the site's own ratings.
MAX_ABS_POWER_KW = 10_000.0
MAX_FUTURE = timedelta(minutes=5)
# Battery units and chargers one reading may list: a ChargePost has two units and a few
# chargers, a large site a few ChargePosts. The bound keeps one reading (counted once by the
# rate limits) from writing thousands of rows.
MAX_UNITS_PER_READING = 64
MAX_CHARGERS_PER_READING = 64
CHARGER_STATUSES = ("available", "preparing", "charging", "finishing", "faulted", "unavailable")


# The dataclasses below are not frozen: Enexa reads them by the thousand, and a frozen
# dataclass sets each field through object.__setattr__ (a quarter of a reading's parse time).
@dataclass
class BatteryUnitReading:
    """One battery unit (a ChargePost has two of 110 kW)."""

    id: str
    soc_pct: float | None = None
    power_kw: float | None = None  # positive = discharge, negative = charge
    soh_pct: float | None = None
    temperature_c: float | None = None
    allowed_charge_kw: float | None = None
    allowed_discharge_kw: float | None = None

    @classmethod
    def read(cls, r: Reader) -> BatteryUnitReading:
        return cls(
            id=r.string("id", required=True, max_length=32) or "",
            soc_pct=r.number("soc_pct", minimum=0, maximum=100),
            power_kw=r.number("power_kw", minimum=-MAX_ABS_POWER_KW, maximum=MAX_ABS_POWER_KW),
            soh_pct=r.number("soh_pct", minimum=0, maximum=100),
            temperature_c=r.number("temperature_c", minimum=-60, maximum=150),
            allowed_charge_kw=r.number("allowed_charge_kw", minimum=0, maximum=MAX_ABS_POWER_KW),
            allowed_discharge_kw=r.number(
                "allowed_discharge_kw", minimum=0, maximum=MAX_ABS_POWER_KW
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return drop_none(self.__dict__.copy())


@dataclass
class BatteryReading:
    """The site's battery system: totals and its units."""

    soc_pct: float | None = None
    power_kw: float | None = None  # positive = discharge, negative = charge
    units: tuple[BatteryUnitReading, ...] = ()

    @classmethod
    def read(cls, r: Reader) -> BatteryReading:
        return cls(
            soc_pct=r.number("soc_pct", minimum=0, maximum=100),
            power_kw=r.number("power_kw", minimum=-MAX_ABS_POWER_KW, maximum=MAX_ABS_POWER_KW),
            units=tuple(
                BatteryUnitReading.read(u)
                for u in r.items("units", max_items=MAX_UNITS_PER_READING)
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        out = drop_none({"soc_pct": self.soc_pct, "power_kw": self.power_kw})
        if self.units:
            out["units"] = [u.to_dict() for u in self.units]
        return out


@dataclass
class GridReading:
    """The grid meter at the connection point."""

    import_kw: float | None = None
    export_kw: float | None = None
    frequency_hz: float | None = None
    voltage_v: float | None = None
    import_energy_kwh: float | None = None
    export_energy_kwh: float | None = None

    @classmethod
    def read(cls, r: Reader) -> GridReading:
        return cls(
            import_kw=r.number("import_kw", minimum=0, maximum=MAX_ABS_POWER_KW),
            export_kw=r.number("export_kw", minimum=0, maximum=MAX_ABS_POWER_KW),
            frequency_hz=r.number("frequency_hz", minimum=40, maximum=70),
            voltage_v=r.number("voltage_v", minimum=0, maximum=100_000),
            import_energy_kwh=r.number("import_energy_kwh", minimum=0),
            export_energy_kwh=r.number("export_energy_kwh", minimum=0),
        )

    def to_dict(self) -> dict[str, Any]:
        return drop_none(self.__dict__.copy())


@dataclass
class ChargerReading:
    """One charger (dispenser) of the site."""

    id: str
    power_kw: float | None = None
    status: str | None = None
    energy_kwh: float | None = None  # energy of the current session

    @classmethod
    def read(cls, r: Reader) -> ChargerReading:
        return cls(
            id=r.string("id", required=True, max_length=32) or "",
            power_kw=r.number("power_kw", minimum=0, maximum=MAX_ABS_POWER_KW),
            status=r.string("status", choices=CHARGER_STATUSES),
            energy_kwh=r.number("energy_kwh", minimum=0),
        )

    def to_dict(self) -> dict[str, Any]:
        return drop_none(self.__dict__.copy())


@dataclass
class TelemetryReading:
    """One reading of a site. Identified by `message_id`, else by (`site_id`, `timestamp`)."""

    site_id: str
    timestamp: datetime
    message_id: str | None = None
    battery: BatteryReading | None = None
    grid: GridReading | None = None
    chargers: tuple[ChargerReading, ...] = ()
    # Sent from the gateway's buffer after an outage rather than live.
    backfilled: bool = False

    @classmethod
    def from_dict(cls, data: Any, *, now: datetime | None = None) -> TelemetryReading:
        """Parse and validate; raises SchemaError with every problem found."""
        return parse(lambda r: cls.read(r, now=now), data)

    @classmethod
    def read(cls, r: Reader, *, now: datetime | None = None) -> TelemetryReading:
        timestamp = r.timestamp("timestamp", required=True)
        if timestamp is not None and timestamp > (now or datetime.now(UTC)) + MAX_FUTURE:
            r.error("timestamp", "Is too far in the future (more than 5 minutes ahead).")
        battery = r.child("battery")
        grid = r.child("grid")
        return cls(
            site_id=r.string("site_id", required=True, max_length=32) or "",
            timestamp=timestamp or datetime.min.replace(tzinfo=UTC),
            message_id=r.string("message_id", max_length=64),
            battery=BatteryReading.read(battery) if battery else None,
            grid=GridReading.read(grid) if grid else None,
            chargers=tuple(
                ChargerReading.read(c)
                for c in r.items("chargers", max_items=MAX_CHARGERS_PER_READING)
            ),
            backfilled=bool(r.boolean("backfilled", default=False)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "site_id": self.site_id,
            "timestamp": format_timestamp(self.timestamp),
        }
        if self.message_id:
            out["message_id"] = self.message_id
        if self.battery is not None:
            out["battery"] = self.battery.to_dict()
        if self.grid is not None:
            out["grid"] = self.grid.to_dict()
        if self.chargers:
            out["chargers"] = [c.to_dict() for c in self.chargers]
        if self.backfilled:
            out["backfilled"] = True
        return out
