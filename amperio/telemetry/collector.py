"""The control cycle's reading: one snapshot per ChargePost, one shared telemetry reading.

The reading goes into the outbox, never straight to Enexa. The cycle also records the Modbus
link's state (and the gap when it comes back), raises alarm events when the alarm bits change,
and marks the cycle good so the watchdog keeps beating."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from statistics import mean
from typing import Any

from amperio.metrics import MetricCounters, record_modbus_read
from amperio.modbus import registers
from amperio.modbus.errors import ModbusError
from amperio.settings import Settings
from amperio.state import GatewayState, StateKey
from shared.errors import SchemaError
from shared.events import new_event
from shared.fields import format_timestamp, parse_timestamp
from shared.telemetry import TelemetryReading

log = logging.getLogger(__name__)

CHARGER_STATUS = {0: "available", 1: "preparing", 2: "charging", 3: "finishing", 4: "faulted"}
ALARM_BITS = {0: "watchdog_fallback", 1: "setpoint_clamped"}
KEEP_GAPS = 20


def _values(snapshots: Sequence[dict[str, Any]], name: str) -> list[float]:
    return [s[name] for s in snapshots if isinstance(s.get(name), (int, float))]


def _total(values: list[float]) -> float | None:
    return round(sum(values), 3) if values else None


def _mean(values: list[float]) -> float | None:
    return round(mean(values), 3) if values else None


def build_reading(
    site_id: str, snapshots: Sequence[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """One wire reading from the snapshots of the site's ChargePosts (units numbered across
    them: ChargePost k holds BAT(2k-1), BAT(2k) and CHG(k))."""
    units: list[dict[str, Any]] = []
    chargers: list[dict[str, Any]] = []
    for k, snap in enumerate(snapshots):
        for b in (1, 2):
            units.append(
                {
                    "id": f"BAT{2 * k + b}",
                    "soc_pct": snap.get(registers.battery(b, "soc_pct")),
                    "power_kw": snap.get(registers.battery(b, "power_kw")),
                    "soh_pct": snap.get(registers.battery(b, "soh_pct")),
                    "temperature_c": snap.get(registers.battery(b, "temperature_c")),
                    "allowed_charge_kw": snap.get(registers.battery_allowed(b, "charge")),
                    "allowed_discharge_kw": snap.get(registers.battery_allowed(b, "discharge")),
                }
            )
        status = snap.get(registers.charger(1, "status"))
        chargers.append(
            {
                "id": f"CHG{k + 1}",
                "power_kw": snap.get(registers.charger(1, "power_kw")),
                "status": CHARGER_STATUS.get(status, "unavailable") if status is not None else None,
                "energy_kwh": snap.get(registers.charger(1, "session_energy_kwh")),
            }
        )
    voltages = _values(snapshots, "grid_voltage_l1_v")
    timestamp = format_timestamp(now.replace(microsecond=now.microsecond // 1000 * 1000))
    data = {
        "site_id": site_id,
        "timestamp": timestamp,
        # Deterministic: the same cycle re-run (a redelivered task) is stored once by Enexa.
        "message_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"amperio:{site_id}:{timestamp}")),
        "battery": {
            "soc_pct": _mean([u["soc_pct"] for u in units if u["soc_pct"] is not None]),
            "power_kw": _total([u["power_kw"] for u in units if u["power_kw"] is not None]),
            "units": units,
        },
        "grid": {
            "import_kw": _total(_values(snapshots, "grid_import_kw")),
            "export_kw": _total(_values(snapshots, "grid_export_kw")),
            "frequency_hz": _mean(_values(snapshots[:1], "grid_frequency_hz")),
            "voltage_v": _mean(voltages),
            "import_energy_kwh": _total(_values(snapshots, "grid_import_energy_kwh")),
            "export_energy_kwh": _total(_values(snapshots, "grid_export_energy_kwh")),
        },
        "chargers": chargers,
    }
    return _valid(data, now)


def _valid(data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The reading through the shared schema; a value it refuses (a register out of range) is
    left out rather than losing the whole reading."""
    try:
        return TelemetryReading.from_dict(data, now=now).to_dict()
    except SchemaError as exc:
        log.warning("Reading values left out as invalid: %s", exc)
        for path in exc.errors:
            *parents, leaf = path.split(".")
            node: Any = data
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node.get(part, {})
            if isinstance(node, dict) and leaf not in ("id", "site_id", "timestamp"):
                node[leaf] = None
        return TelemetryReading.from_dict(data, now=now).to_dict()


def _alarm_events(
    site_id: str, index: int, old: int | None, new: int | None, now: datetime
) -> list[dict[str, Any]]:
    if new is None or old == new or (old is None and new == 0):
        return []
    old = old or 0
    raised = [ALARM_BITS.get(b, f"bit{b}") for b in range(16) if new & ~old & (1 << b)]
    cleared = [ALARM_BITS.get(b, f"bit{b}") for b in range(16) if old & ~new & (1 << b)]
    data = {"chargepost": index + 1, "alarm_bits": new, "raised": raised, "cleared": cleared}
    events = [
        new_event(
            site_id,
            "alarm",
            f"ChargePost {index + 1} alarms raised: {raised or '-'}, cleared: {cleared or '-'}",
            now,
            "warning" if raised else "info",
            data,
        )
    ]
    if "watchdog_fallback" in raised:
        events.append(
            new_event(
                site_id,
                "watchdog",
                f"ChargePost {index + 1} fell back to its safe state (watchdog).",
                now,
                "critical",
                data,
            )
        )
    return events


def _link_events(
    site_id: str, state: GatewayState, up: bool, error: str | None, now: datetime
) -> list[dict[str, Any]]:
    """Record the link's state; an event on each change, with the gap when it comes back."""
    was_up = state.get(StateKey.MODBUS_LINK_UP)
    stamp = format_timestamp(now)
    if not up:
        changes: dict[str, Any] = {StateKey.MODBUS_LINK_UP: False, StateKey.MODBUS_ERROR: error}
        events = []
        if was_up is not False:
            changes[StateKey.MODBUS_DOWN_SINCE] = stamp
            events.append(
                new_event(
                    site_id,
                    "modbus_link",
                    f"Modbus link down: {error}",
                    now,
                    "warning",
                    {"state": "down", "since": stamp, "error": error},
                )
            )
        state.update(changes)
        return events
    changes = {
        StateKey.MODBUS_LINK_UP: True,
        StateKey.MODBUS_LAST_READ_AT: stamp,
        StateKey.MODBUS_ERROR: None,
    }
    events = []
    down_since = state.get(StateKey.MODBUS_DOWN_SINCE)
    if was_up is False and down_since:
        start = parse_timestamp(down_since)
        gap_s = round((now - start).total_seconds(), 3) if start else None
        gap = {
            "state": "restored",
            "down_since": down_since,
            "restored_at": stamp,
            "gap_s": gap_s,
            "last_read_before": state.get(StateKey.MODBUS_LAST_READ_AT),
        }
        changes[StateKey.MODBUS_GAPS] = [*(state.get(StateKey.MODBUS_GAPS) or []), gap][-KEEP_GAPS:]
        changes[StateKey.MODBUS_DOWN_SINCE] = None
        events.append(
            new_event(
                site_id, "modbus_link", f"Modbus link restored after {gap_s} s", now, "info", gap
            )
        )
    state.update(changes)
    return events


def collect(
    settings: Settings,
    state: GatewayState,
    outbox: Any,
    clients: Sequence[Any],
    now: datetime,
    counters: MetricCounters | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any] | None]]:
    """Read every ChargePost, queue one reading (and any events) in the outbox; returns the
    reading (None when no ChargePost answered) and each ChargePost's register snapshot (None
    for one that did not answer), for the rest of the cycle to act on without reading again.
    The cycle counts as good (the watchdog's signal) only when every ChargePost answered."""
    snapshots: list[dict[str, Any]] = []
    by_client: list[dict[str, Any] | None] = []
    errors: list[str] = []
    events: list[dict[str, Any]] = []
    old_alarms = state.get(StateKey.ALARM_BITS) or {}
    new_alarms = dict(old_alarms)
    for index, client in enumerate(clients):
        started = time.perf_counter()
        try:
            snap = client.read_snapshot()
        except ModbusError as exc:
            record_modbus_read(counters, index + 1, time.perf_counter() - started, ok=False)
            errors.append(f"ChargePost {index + 1}: {exc}")
            by_client.append(None)
            continue
        record_modbus_read(counters, index + 1, time.perf_counter() - started, ok=True)
        snapshots.append(snap)
        by_client.append(snap)
        bits = snap.get("alarm_bits")
        events += _alarm_events(settings.site_id, index, old_alarms.get(str(index)), bits, now)
        if bits is not None:
            new_alarms[str(index)] = bits
    events += _link_events(settings.site_id, state, not errors, "; ".join(errors) or None, now)
    reading = build_reading(settings.site_id, snapshots, now) if snapshots else None
    if reading is not None:
        outbox.add_reading(reading)
    for event in events:
        outbox.add_event(event)
    changes: dict[str, Any] = {StateKey.ALARM_BITS: new_alarms}
    if not errors:
        changes[StateKey.CONTROL_CYCLE_OK_AT] = format_timestamp(now)
    state.update(changes)
    return reading, by_client
