"""The watchdog heartbeat: keeps the ChargePost out of its safe state only while we control it.

It runs on its own queue and worker, so a slow Modbus read or a hanging HTTP call in the control
cycle cannot starve it. It beats only while the control cycle is alive (it recorded a good cycle
recently) and the Modbus link works: a gateway that hangs or loses the link must let the hardware
fall back on its own, never keep it alive from a process that no longer controls the unit."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from amperio.modbus import registers
from amperio.modbus.errors import ModbusError
from amperio.state import GatewayState, StateKey
from shared.fields import format_timestamp, parse_timestamp

log = logging.getLogger(__name__)

HEARTBEAT_MAX = 65534  # the register's range; 0xFFFF means "undefined"


def control_stale_after_s(config: dict[str, Any]) -> float:
    """How old the last good control cycle may be before the heartbeat is withheld: half the
    hardware timeout, but never less than two control cycles (nor more than the timeout)."""
    s = config["settings"]
    timeout_s = float(s["watchdog"]["timeout_s"])
    cycle_s = float(s["telemetry"]["interval_s"])
    return min(timeout_s, max(timeout_s / 2, 2 * cycle_s))


def _next(counter: Any) -> int:
    """The heartbeat after `counter`: 1 … HEARTBEAT_MAX, wrapping round."""
    return int(counter or 0) % HEARTBEAT_MAX + 1


def _withhold(state: GatewayState, reason: str) -> bool:
    if state.get(StateKey.WATCHDOG_WITHHELD) != reason:
        log.warning("Watchdog heartbeat withheld: %s", reason)
    state.update({StateKey.WATCHDOG_BEATING: False, StateKey.WATCHDOG_WITHHELD: reason})
    return False


def beat(client: Any, state: GatewayState, config: dict[str, Any], now: datetime) -> bool:
    """Write the next heartbeat (and the configured hardware timeout) if the gateway is in
    control; returns whether it beat."""
    timeout_s = int(config["settings"]["watchdog"]["timeout_s"])
    ok_at = parse_timestamp(state.get(StateKey.CONTROL_CYCLE_OK_AT))
    if ok_at is None:
        return _withhold(state, "no control cycle yet")
    age_s = (now - ok_at).total_seconds()
    if age_s > control_stale_after_s(config):
        return _withhold(state, f"control cycle stale ({age_s:.0f} s)")
    if not state.get(StateKey.MODBUS_LINK_UP):
        return _withhold(state, "Modbus link down")
    counter = _next(state.get(StateKey.WATCHDOG_COUNTER))
    try:
        held = client.read(
            [registers.WATCHDOG_TIMEOUT, registers.WATCHDOG_HEARTBEAT]
        )  # adjacent: one request
        if held.get(registers.WATCHDOG_TIMEOUT) != timeout_s:
            client.write(registers.WATCHDOG_TIMEOUT, timeout_s)
        if counter == held.get(registers.WATCHDOG_HEARTBEAT):
            # The unit counts only a changed value; after a lost state the counter may restart
            # on the value it holds.
            counter = _next(counter)
        client.write(registers.WATCHDOG_HEARTBEAT, counter)
    except ModbusError as exc:
        return _withhold(state, f"heartbeat write failed: {exc}")
    state.update(
        {
            StateKey.WATCHDOG_COUNTER: counter,
            StateKey.WATCHDOG_LAST_BEAT_AT: format_timestamp(now),
            StateKey.WATCHDOG_BEATING: True,
            StateKey.WATCHDOG_WITHHELD: None,
        }
    )
    return True
