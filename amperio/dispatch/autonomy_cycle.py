"""Autonomy's part in each control cycle: write what `decide` chose (battery setpoints,
charger caps and their release) and record mode changes as `mode_change` events."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from amperio.dispatch.autonomy import (
    DEFAULT_CHARGER_MAX_KW,
    Decision,
    chargers_in,
    decide,
    parse_when,
    units_in,
)
from amperio.modbus import registers
from amperio.state import StateKey
from shared.events import new_event
from shared.fields import format_timestamp

log = logging.getLogger(__name__)


class ModeTracker:
    """Remembers the mode in the gateway state; a change becomes a `mode_change` event."""

    KEY = StateKey.AUTONOMY_MODE

    def __init__(self, state: Any, site_id: str, mode: str | None = None):
        """`mode`: the stored mode where the caller has just read it (else read here)."""
        self.state = state
        self.site_id = site_id
        self.mode = self.stored_mode(state) if mode is None else mode

    @classmethod
    def stored_mode(cls, state: Any) -> str:
        """The mode recorded in `state` (the gateway state or a snapshot of it)."""
        return state.get(cls.KEY) or "normal"

    def observe(self, decision: Decision, now: datetime) -> dict[str, Any] | None:
        """Record the decision's mode; the event dict when it changed, else None."""
        previous = self.mode
        if decision.mode == previous:
            return None
        self.state.update(
            {self.KEY: decision.mode, StateKey.AUTONOMY_MODE_SINCE: format_timestamp(now)}
        )
        self.mode = decision.mode
        return new_event(
            self.site_id,
            "mode_change",
            f"Mode {previous} -> {decision.mode}: {decision.reason}",
            now,
            "info" if decision.mode == "normal" else "warning",
            {"from": previous, "to": decision.mode, **decision.to_dict()},
        )


# The chargers autonomy capped, in the gateway state: their limits go back when it stops.
CAPPED_KEY = StateKey.AUTONOMY_CAPPED_CHARGERS


def run_cycle(
    *,
    client: Any,
    state: Any,
    config: dict[str, Any],
    snapshot: dict[str, Any],
    outbox: Any,
    settings: Any,
    enexa_unreachable_for_s: float,
    now: datetime,
    schedule: list[dict[str, Any]],
    leases: list[dict[str, Any]] | None = None,
    mode: str | None = None,
    capped: list[str] | None = None,
) -> dict[str, Any]:
    """One control cycle's autonomy step for the ChargePost `client` talks to, from the
    snapshot just read from it: decide, write its unit setpoints and charger caps when the
    gateway is in charge, and queue a mode change event. `leases` are the command table's
    (a cap never raises a charger limit a dispatched command set lower); `mode` and `capped`
    what `state` holds (read from it where not given). Returns the decision as a dict."""
    last_ok = now - timedelta(seconds=enexa_unreachable_for_s) if enexa_unreachable_for_s else now
    decision = decide(now, snapshot, config, schedule, last_ok)
    tracker = ModeTracker(state, settings.site_id, mode)
    previous = tracker.mode
    capped_before: list[str] = (state.get(CAPPED_KEY) or []) if capped is None else capped
    writes: dict[str, float] = {}
    if decision.mode != "normal":
        # Enexa is away: the gateway is in charge of the battery (written after the lease
        # re-assertion of the same cycle, so this is what holds).
        writes = {registers.battery_setpoint(u): p for u, p in decision.unit_power_kw.items()}
    elif previous == "safe_local":
        # Hand back: the units idle until Enexa re-dispatches.
        writes = {registers.battery_setpoint(u.name): 0.0 for u in units_in(snapshot)}
    if decision.charger_limit_kw or capped_before:
        writes.update(
            _charger_limit_writes(decision, capped_before, config, snapshot, leases or [], now)
        )
    if writes:
        try:
            client.write_many(writes, read_back=False)  # nothing here uses what the unit holds
        except Exception:  # the next cycle tries again; the decision is still recorded
            log.exception("Autonomy setpoint write failed: %s", writes)
        else:
            # Remembered only once written, so a failed release is tried again next cycle.
            capped_now = sorted(decision.charger_limit_kw)
            if capped_now != capped_before:
                state.update({CAPPED_KEY: capped_now})
    event = tracker.observe(decision, now)
    if event is not None:
        outbox.add_event(event)
    return {**decision.to_dict(), "written": writes}


def _charger_limit_writes(
    decision: Decision,
    capped_before: list[str],
    config: dict[str, Any],
    snapshot: dict[str, Any],
    leases: list[dict[str, Any]],
    now: datetime,
) -> dict[str, float]:
    """The charger limit registers to write: this decision's caps (never above a live lease),
    and, for chargers capped before but not now, their limit back: the lease's value where one
    holds, else the charger's maximum."""
    held = {
        row["register"]: float(row["value"])
        for row in leases
        if (until := parse_when(row.get("valid_until"))) is not None and until > now
    }
    writes = {}
    for name, cap in decision.charger_limit_kw.items():
        register = registers.charger_limit(name)
        writes[register] = min(cap, held.get(register, cap))
    maxima = {c.name: c.max_kw for c in chargers_in(snapshot, config)}
    for name in capped_before:
        register = registers.charger_limit(name)
        if name not in decision.charger_limit_kw:
            writes[register] = held.get(register, maxima.get(name, DEFAULT_CHARGER_MAX_KW))
    return writes
