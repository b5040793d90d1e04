"""What the simulated ChargePost does: batteries, chargers and sessions, grid meter, watchdog."""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field

from amperio.modbus import registers

ALARM_WATCHDOG = 1 << 0  # alarm_bits bit0: watchdog fallback active
ALARM_CLAMPED = 1 << 1  # alarm_bits bit1: a setpoint was beyond the allowed power and was clamped

MODE_AUTO, MODE_MANUAL, MODE_SAFE = 0, 1, 2
BAT_STANDBY, BAT_CHARGING, BAT_DISCHARGING = 1, 2, 3
CHG_IDLE, CHG_PREPARING, CHG_CHARGING, CHG_FINISHING = 0, 1, 2, 3
MAX_STEP_S = 1.0  # physics integrates in steps of at most one simulated second

# The writable registers of a battery and a charger, by name after the unit's prefix: the
# attribute a write sets and, for the setpoint, the attribute stamped with the time of the write.
_BATTERY_WRITES: dict[str, tuple[str, str | None]] = {
    "power_setpoint_kw": ("setpoint_kw", "last_setpoint_at"),
    "setpoint_reversion_timeout_s": ("reversion_timeout_s", None),
    "setpoint_reversion_kw": ("reversion_kw", None),
}
_CHARGER_WRITES: dict[str, tuple[str, str | None]] = {
    "power_limit_kw": ("power_limit_kw", "last_limit_at"),
    "fallback_limit_kw": ("fallback_limit_kw", None),
    "timeout_s": ("timeout_s", None),
}


@dataclass
class BatteryUnit:
    """One battery unit: SOC follows power with a one-way efficiency; power follows its setpoint."""

    capacity_kwh: float = 100.0
    max_power_kw: float = 110.0
    efficiency: float = 0.95  # one way: charging stores P*eff, discharging draws P/eff
    soc_pct: float = 50.0
    soh_pct: float = 98.0
    temperature_c: float = 25.0
    power_kw: float = 0.0  # positive discharge, negative charge
    setpoint_kw: float = 0.0
    reversion_timeout_s: float = 0.0
    reversion_kw: float = 0.0
    last_setpoint_at: float = 0.0
    clamped: bool = False

    @property
    def allowed_charge_kw(self) -> float:
        # Charge power tapers over the last 5 % as a BMS would, and is zero when full.
        return round(self.max_power_kw * min(1.0, max(0.0, (100.0 - self.soc_pct) / 5.0)), 1)

    @property
    def allowed_discharge_kw(self) -> float:
        return round(self.max_power_kw * min(1.0, max(0.0, self.soc_pct / 5.0)), 1)

    @property
    def state(self) -> int:
        if self.power_kw > 0:
            return BAT_DISCHARGING
        return BAT_CHARGING if self.power_kw < 0 else BAT_STANDBY

    def step(self, dt_s: float, now_s: float, safe: bool) -> None:
        if (
            self.reversion_timeout_s > 0
            and now_s - self.last_setpoint_at >= self.reversion_timeout_s
            and self.setpoint_kw != self.reversion_kw
        ):
            self.setpoint_kw = self.reversion_kw
        wanted = 0.0 if safe else self.setpoint_kw
        power = min(max(wanted, -self.allowed_charge_kw), self.allowed_discharge_kw)
        self.clamped = not math.isclose(power, wanted, abs_tol=1e-9)
        self.power_kw = power
        if power < 0:
            stored_kwh = -power * self.efficiency * dt_s / 3600.0
        else:
            stored_kwh = -power / self.efficiency * dt_s / 3600.0
        self.soc_pct = min(100.0, max(0.0, self.soc_pct + 100.0 * stored_kwh / self.capacity_kwh))
        # Cells warm with power and cool toward 25 °C (time constant ~10 min).
        target_c = 25.0 + 10.0 * abs(power) / self.max_power_kw
        self.temperature_c += (target_c - self.temperature_c) * min(1.0, dt_s / 600.0)


@dataclass
class Vehicle:
    """An electric vehicle plugged into a charger."""

    capacity_kwh: float = 80.0
    soc_pct: float = 20.0
    target_soc_pct: float = 90.0
    max_power_kw: float = 150.0

    def acceptance_kw(self) -> float:
        # Typical DC charging curve: full power up to 80 % SOC, then a linear taper.
        if self.soc_pct < 80.0:
            return self.max_power_kw
        return max(2.0, self.max_power_kw * (100.0 - self.soc_pct) / 20.0)


@dataclass
class Charger:
    """One DC charger: vehicle sessions (plug in, prepare, ramp, taper, finish, unplug)."""

    max_power_kw: float = 300.0
    ramp_kw_per_s: float = 25.0
    prepare_s: float = 10.0
    linger_s: float = 60.0  # a finished vehicle stays plugged this long before leaving
    power_limit_kw: float = 300.0
    fallback_limit_kw: float = 50.0
    timeout_s: float = 0.0
    last_limit_at: float = 0.0
    status: int = CHG_IDLE
    power_kw: float = 0.0
    session_energy_kwh: float = 0.0
    vehicle: Vehicle | None = None
    phase_s: float = 0.0  # time spent in the current status
    auto_leave: bool = True

    @property
    def connector_state(self) -> int:
        return 1 if self.vehicle is not None else 0

    def plug_in(self, vehicle: Vehicle) -> None:
        self.vehicle = vehicle
        self.status, self.phase_s = CHG_PREPARING, 0.0
        self.session_energy_kwh = 0.0

    def unplug(self) -> None:
        self.vehicle = None
        self.status, self.phase_s, self.power_kw = CHG_IDLE, 0.0, 0.0

    def step(self, dt_s: float, now_s: float, safe: bool) -> None:
        if self.timeout_s > 0 and now_s - self.last_limit_at >= self.timeout_s:
            self.power_limit_kw = self.fallback_limit_kw
        self.phase_s += dt_s
        vehicle = self.vehicle
        if vehicle is None:
            self.power_kw = 0.0
            return
        if self.status == CHG_PREPARING and self.phase_s >= self.prepare_s:
            self.status, self.phase_s = CHG_CHARGING, 0.0
        if self.status == CHG_CHARGING:
            limit = self.fallback_limit_kw if safe else self.power_limit_kw
            target = min(limit, self.max_power_kw, vehicle.acceptance_kw())
            # Ramp up at a bounded rate; step down at once (a limit must hold immediately).
            self.power_kw = min(target, self.power_kw + self.ramp_kw_per_s * dt_s)
            energy = self.power_kw * dt_s / 3600.0
            self.session_energy_kwh += energy
            vehicle.soc_pct = min(100.0, vehicle.soc_pct + 100.0 * energy / vehicle.capacity_kwh)
            if vehicle.soc_pct >= vehicle.target_soc_pct:
                self.status, self.phase_s, self.power_kw = CHG_FINISHING, 0.0, 0.0
        elif self.status == CHG_FINISHING:
            self.power_kw = 0.0
            if self.auto_leave and self.phase_s >= self.linger_s:
                self.unplug()
        else:
            self.power_kw = 0.0


@dataclass
class GridMeter:
    """The grid connection point: net of site load, chargers and batteries, with energy counters."""

    import_kw: float = 0.0
    export_kw: float = 0.0
    phase_kw: tuple[float, float, float] = (0.0, 0.0, 0.0)
    voltage_v: tuple[float, float, float] = (230.0, 230.0, 230.0)
    frequency_hz: float = 50.0
    import_energy_kwh: float = 10000.0
    export_energy_kwh: float = 500.0

    def update(self, net_kw: float, dt_s: float, rng: random.Random) -> None:
        self.import_kw, self.export_kw = max(net_kw, 0.0), max(-net_kw, 0.0)
        self.phase_kw = (net_kw / 3.0, net_kw / 3.0, net_kw / 3.0)
        self.voltage_v = tuple(round(230.0 + rng.uniform(-2.0, 2.0), 1) for _ in range(3))  # type: ignore[assignment]
        self.frequency_hz = round(50.0 + rng.uniform(-0.03, 0.03), 2)
        self.import_energy_kwh += self.import_kw * dt_s / 3600.0
        self.export_energy_kwh += self.export_kw * dt_s / 3600.0


@dataclass
class ChargePostState:
    """The whole unit; `advance(dt_s)` runs the physics, `apply_write` takes a register write.

    Thread-safe: the Modbus server and tests both touch it, always under `lock`."""

    seed: int = 0
    batteries: list[BatteryUnit] = field(default_factory=lambda: [BatteryUnit(), BatteryUnit()])
    chargers: list[Charger] = field(default_factory=lambda: [Charger()])
    meter: GridMeter = field(default_factory=GridMeter)
    base_load_kw: float = 20.0
    site_load_kw: float = 20.0
    site_grid_limit_kw: float = 400.0
    # Mean simulated seconds between a charger becoming free and the next vehicle; 0 = none.
    mean_arrival_s: float = 900.0
    now_s: float = 0.0
    watchdog_timeout_s: float = 60.0
    heartbeat: int = 0
    last_heartbeat_at: float = 0.0
    safe: bool = False
    heartbeat_since_safe: bool = False
    setpoint_since_safe: bool = False
    operating_mode: int = MODE_AUTO
    system_state: int = 2  # running
    vendor: str = "ADS-TEC Energy"
    model: str = "ChargePost"
    interface_version: str = "2.6"
    firmware_version: str = "sim-1.0"
    serial: str = "CP-SIM-0001"
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - simulation noise, not security
        self._next_arrival_s = [self._draw_arrival() for _ in self.chargers]

    def _draw_arrival(self) -> float:
        if self.mean_arrival_s <= 0:
            return math.inf
        return self.now_s + self.rng.expovariate(1.0 / self.mean_arrival_s)

    # -- time ----------------------------------------------------------------------------------

    def advance(self, dt_s: float) -> None:
        """Run the physics for `dt_s` simulated seconds, in steps of at most one second."""
        with self.lock:
            while dt_s > 1e-9:
                step = min(dt_s, MAX_STEP_S)
                self._step(step)
                dt_s -= step

    def advance_to(self, now_s: float) -> None:
        with self.lock:
            self.advance(now_s - self.now_s)

    def _step(self, dt_s: float) -> None:
        self.now_s += dt_s
        if not self.safe and self.now_s - self.last_heartbeat_at > self.watchdog_timeout_s:
            self._enter_safe_state()
        for battery in self.batteries:
            battery.step(dt_s, self.now_s, self.safe)
        for index, charger in enumerate(self.chargers):
            if charger.vehicle is None and self.now_s >= self._next_arrival_s[index]:
                charger.plug_in(self._random_vehicle())
            was_plugged = charger.vehicle is not None
            charger.step(dt_s, self.now_s, self.safe)
            if was_plugged and charger.vehicle is None:
                self._next_arrival_s[index] = self._draw_arrival()
        # Site load: a daily swing around the base load plus a little noise.
        daily = math.sin(2 * math.pi * self.now_s / 86400.0)
        noise = self.rng.uniform(-0.5, 0.5)
        self.site_load_kw = max(0.0, self.base_load_kw * (1.0 + 0.3 * daily) + noise)
        self.meter.update(self.net_grid_kw(), dt_s, self.rng)

    def _random_vehicle(self) -> Vehicle:
        r = self.rng
        return Vehicle(
            capacity_kwh=r.choice([50.0, 64.0, 77.0, 93.0]),
            soc_pct=r.uniform(10.0, 50.0),
            target_soc_pct=r.choice([80.0, 90.0, 100.0]),
            max_power_kw=r.choice([50.0, 150.0, 270.0]),
        )

    def net_grid_kw(self) -> float:
        """Grid import (positive) or export (negative): load + chargers - battery discharge."""
        chargers = sum(c.power_kw for c in self.chargers)
        batteries = sum(b.power_kw for b in self.batteries)
        return self.site_load_kw + chargers - batteries

    # -- watchdog ------------------------------------------------------------------------------

    def _enter_safe_state(self) -> None:
        self.safe = True
        self.heartbeat_since_safe = self.setpoint_since_safe = False
        self.operating_mode = MODE_SAFE
        for battery in self.batteries:
            battery.setpoint_kw = 0.0
        for charger in self.chargers:
            charger.power_limit_kw = charger.fallback_limit_kw

    def _maybe_leave_safe_state(self) -> None:
        if self.safe and self.heartbeat_since_safe and self.setpoint_since_safe:
            self.safe = False
            self.operating_mode = MODE_AUTO

    @property
    def alarm_bits(self) -> int:
        bits = ALARM_WATCHDOG if self.safe else 0
        if any(b.clamped for b in self.batteries):
            bits |= ALARM_CLAMPED
        return bits

    # -- registers -----------------------------------------------------------------------------

    def values(self) -> dict[str, float | int | str]:
        """Every register's engineering value by name."""
        with self.lock:
            m = self.meter
            values: dict[str, float | int | str] = {
                "vendor": self.vendor,
                "model": self.model,
                "interface_version": self.interface_version,
                "firmware_version": self.firmware_version,
                "serial": self.serial,
                "system_state": self.system_state,
                "operating_mode": self.operating_mode,
                "alarm_bits": self.alarm_bits,
                "watchdog_heartbeat": self.heartbeat,
                "watchdog_timeout_s": self.watchdog_timeout_s,
                "site_grid_limit_kw": self.site_grid_limit_kw,
                "site_load_kw": self.site_load_kw,
                "grid_import_kw": m.import_kw,
                "grid_export_kw": m.export_kw,
                "grid_power_l1_kw": m.phase_kw[0],
                "grid_power_l2_kw": m.phase_kw[1],
                "grid_power_l3_kw": m.phase_kw[2],
                "grid_voltage_l1_v": m.voltage_v[0],
                "grid_voltage_l2_v": m.voltage_v[1],
                "grid_voltage_l3_v": m.voltage_v[2],
                "grid_frequency_hz": m.frequency_hz,
                "grid_import_energy_kwh": m.import_energy_kwh,
                "grid_export_energy_kwh": m.export_energy_kwh,
            }
            for n, b in enumerate(self.batteries, start=1):
                values.update(
                    {
                        registers.battery(n, "soc_pct"): b.soc_pct,
                        registers.battery(n, "soh_pct"): b.soh_pct,
                        registers.battery(n, "power_kw"): b.power_kw,
                        registers.battery(n, "allowed_charge_kw"): b.allowed_charge_kw,
                        registers.battery(n, "allowed_discharge_kw"): b.allowed_discharge_kw,
                        registers.battery(n, "power_setpoint_kw"): b.setpoint_kw,
                        registers.battery(n, "setpoint_reversion_timeout_s"): b.reversion_timeout_s,
                        registers.battery(n, "setpoint_reversion_kw"): b.reversion_kw,
                        registers.battery(n, "state"): b.state,
                        registers.battery(n, "temperature_c"): b.temperature_c,
                    }
                )
            for n, c in enumerate(self.chargers, start=1):
                values.update(
                    {
                        registers.charger(n, "status"): c.status,
                        registers.charger(n, "power_kw"): c.power_kw,
                        registers.charger(n, "session_energy_kwh"): c.session_energy_kwh,
                        registers.charger(n, "connector_state"): c.connector_state,
                        registers.charger(n, "power_limit_kw"): c.power_limit_kw,
                        registers.charger(n, "fallback_limit_kw"): c.fallback_limit_kw,
                        registers.charger(n, "timeout_s"): c.timeout_s,
                    }
                )
            return values

    def apply_write(self, name: str, value: float | int | str) -> None:
        """Take a value written by the controller (already range-checked against the map)."""
        with self.lock:
            number = float(value) if not isinstance(value, str) else 0.0
            if name == "watchdog_heartbeat":
                # Only a changed value is a heartbeat (the map and the vendor doc say so): a
                # controller stuck repeating its last write must let the watchdog run out.
                if int(number) != self.heartbeat:
                    self.last_heartbeat_at = self.now_s
                    if self.safe:
                        self.heartbeat_since_safe = True
                self.heartbeat = int(number)
            elif name == "watchdog_timeout_s":
                self.watchdog_timeout_s = number
            elif name == "site_grid_limit_kw":
                self.site_grid_limit_kw = number
            elif name.startswith(("bat", "chg")):
                self._write_unit(name, number)
            else:
                raise KeyError(f"{name} is not writable on this unit")
            self._maybe_leave_safe_state()

    def _write_unit(self, name: str, number: float) -> None:
        """A battery or charger register: `bat2_power_setpoint_kw` is battery 2's setpoint."""
        unit, _, field_name = name.partition("_")
        devices, writable = (
            (self.batteries, _BATTERY_WRITES)
            if unit.startswith("bat")
            else (self.chargers, _CHARGER_WRITES)
        )
        if field_name not in writable:
            raise KeyError(f"{name} is not writable on this unit")
        device = devices[int(unit[3:]) - 1]
        attribute, written_at = writable[field_name]
        setattr(device, attribute, number)
        if written_at is not None:
            # The setpoint itself: its own timeout restarts, and it counts towards leaving
            # the safe state.
            setattr(device, written_at, self.now_s)
            self.setpoint_since_safe = self.setpoint_since_safe or self.safe
