"""Setpoint leases: a setpoint holds until its command's validity ends, re-asserted every cycle.

`reassert` re-writes and reads back every live setpoint (hardware reverts setpoints on its own
timers and a reconnect can lose them); when a lease runs out the unit goes back to its default
behaviour. Between dispatched setpoints, the active schedule's slot becomes a lease."""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Collection
from datetime import datetime
from typing import Any

from amperio.dispatch.limits import configured_grid_limit_kw, reversion_timeout_s
from amperio.dispatch.plan import Plan, split_battery_power
from amperio.dispatch.records import RegisterClient, now_utc, same_value, stored_ts
from amperio.dispatch.table import CommandTable
from amperio.modbus import registers
from amperio.modbus.errors import ModbusError
from shared.fields import parse_timestamp

logger = logging.getLogger(__name__)


def reversion_timeout(config: dict[str, Any] | None, lease_until: datetime, now: datetime) -> int:
    """The reversion timeout to arm with a setpoint: the configured one, but never longer than
    the lease, so a dead gateway's setpoint does not outlive its validity."""
    remaining = math.ceil((lease_until - now).total_seconds())
    return max(1, min(reversion_timeout_s(config), remaining))


class LeaseTable:
    """The `leases` table of the command file: one live setpoint per register."""

    def __init__(self, commands: CommandTable):
        # The command table: its connection, the gateway mode and the active schedule.
        self.commands = commands

    def start(self, command_id: str, plan: Plan, valid_until: datetime) -> None:
        """Lease each register `plan` leases, until `valid_until` (replacing any lease on it)."""
        values = dict(plan.writes)
        conn = self.commands.conn()
        with conn:
            for name, default in plan.leases.items():
                unit = registers.battery_unit_of(name)
                conn.execute(
                    "INSERT INTO leases (register, value, default_value, valid_until, command_id,"
                    " reversion_timeout_register) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(register) DO UPDATE SET value = excluded.value,"
                    " default_value = excluded.default_value, valid_until = excluded.valid_until,"
                    " command_id = excluded.command_id,"
                    " reversion_timeout_register = excluded.reversion_timeout_register",
                    (
                        name,
                        values[name],
                        default,
                        stored_ts(valid_until),
                        command_id,
                        registers.battery_reversion_timeout(unit) if unit else None,
                    ),
                )

    def drop_all(self) -> None:
        """Safe mode: no setpoint holds any more."""
        self.commands.conn().execute("DELETE FROM leases")

    def _rows(self) -> list[sqlite3.Row]:
        return self.commands.conn().execute("SELECT * FROM leases ORDER BY register").fetchall()

    def leases(self) -> list[dict[str, Any]]:
        return [
            {
                "register": row["register"],
                "value": row["value"],
                "default_value": row["default_value"],
                "valid_until": row["valid_until"],
                "command_id": row["command_id"],
            }
            for row in self._rows()
        ]

    def reassert(
        self,
        client: RegisterClient,
        now: datetime | None = None,
        config: dict[str, Any] | None = None,
        *,
        snapshot: dict[str, Any] | None = None,
        held_elsewhere: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """Re-write and read back every live setpoint; return ended ones to their default.

        `snapshot` is what the unit answered this cycle (saves reading the registers again).
        The registers in `held_elsewhere` are written by someone else this cycle (autonomy's
        battery setpoints while Enexa is away, the charger limits it caps, never above a
        lease): their leases, live or ended, write nothing (nor a reversion timeout), so the
        unit never sees two values in one cycle; an ended one is still released.

        Returns one entry per register touched: `action` is `reasserted`, `corrected` (the unit
        had lost or reverted it), `released` (lease over, default written unless held elsewhere)
        or `failed`.
        """
        now = now or now_utc()
        rows = self._rows()
        if self._lease_from_schedule(client, now, config, rows):
            rows = self._rows()
        if not rows:
            return []
        ids = {row["register"]: row["command_id"] for row in rows}
        ended = {
            row["register"]: self._default_for(row["register"], row["default_value"], config)
            for row in rows
            if now >= parse_timestamp(row["valid_until"])  # type: ignore[operator]
        }
        live = [
            r for r in rows if r["register"] not in ended and r["register"] not in held_elsewhere
        ]
        writes = self._writes(ended, live, held_elsewhere, config, now)
        try:
            names = [row["register"] for row in live]
            if snapshot is not None:
                before = {name: snapshot.get(name) for name in names}
            else:
                before = client.read(names) if names else {}
            readback = client.write_many(writes)
        except ModbusError as exc:  # the link is down; the next cycle tries again
            logger.warning("leases not re-asserted: %s", exc)
            return [
                {"register": name, "action": "failed", "error": str(exc), "command_id": cid}
                for name, cid in ids.items()
            ]
        conn = self.commands.conn()
        with conn:
            conn.executemany("DELETE FROM leases WHERE register = ?", [(n,) for n in ended])
        return self._report(ended, live, ids, before, readback)

    def _writes(
        self,
        ended: dict[str, float],
        live: list[sqlite3.Row],
        held_elsewhere: Collection[str],
        config: dict[str, Any] | None,
        now: datetime,
    ) -> dict[str, Any]:
        """Defaults for the ended leases not held elsewhere; each live setpoint after its
        reversion timeout."""
        writes: dict[str, Any] = {k: v for k, v in ended.items() if k not in held_elsewhere}
        for row in live:
            if row["reversion_timeout_register"]:
                valid_until = parse_timestamp(row["valid_until"])
                assert valid_until is not None
                writes[row["reversion_timeout_register"]] = reversion_timeout(
                    config, valid_until, now
                )
            writes[row["register"]] = row["value"]
        return writes

    @staticmethod
    def _report(
        ended: dict[str, float],
        live: list[sqlite3.Row],
        ids: dict[str, str],
        before: dict[str, Any],
        readback: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """One entry per register touched (see `reassert`); a change is logged."""
        results: list[dict[str, Any]] = [
            {
                "register": name,
                "action": "released",
                "value": default,
                "readback": readback.get(name),
                "command_id": ids[name],
            }
            for name, default in ended.items()
        ]
        for row in live:
            name = row["register"]
            results.append(
                {
                    "register": name,
                    "action": "reasserted"
                    if same_value(row["value"], before.get(name))
                    else "corrected",
                    "value": row["value"],
                    "before": before.get(name),
                    "readback": readback.get(name),
                    "command_id": ids[name],
                }
            )
        for entry in results:
            if entry["action"] != "reasserted":
                logger.info(
                    "lease %s on %s (%s)", entry["action"], entry["register"], entry["command_id"]
                )
        return results

    @staticmethod
    def _default_for(name: str, stored: float, config: dict[str, Any] | None) -> float:
        """The unit's default for a register, from the current config where it names one."""
        limits = (config or {}).get("limits") or {}
        if name == registers.SITE_GRID_LIMIT:
            value = configured_grid_limit_kw(config or {})
            return value if value is not None else stored
        charger = registers.charger_of_limit(name)
        if charger is not None:
            value = (limits.get("chargers") or {}).get(charger, {}).get("max_power_kw")
            return float(value) if value is not None else stored
        return stored

    def _lease_from_schedule(
        self,
        client: RegisterClient,
        now: datetime,
        config: dict[str, Any] | None,
        rows: list[sqlite3.Row],
    ) -> bool:
        """Where no explicit battery setpoint holds (among the lease `rows`), the active
        schedule's slot becomes one; True when it did."""
        held = {
            row["register"]
            for row in rows
            if parse_timestamp(row["valid_until"]) > now  # type: ignore[operator]
        }
        if any(registers.battery_unit_of(name) for name in held):
            return False
        if self.commands.current_mode() != "auto":
            return False
        slot = next((s for s in self.commands.active_schedule(now) if s["start"] <= now), None)
        if slot is None:
            return False
        limits = (config or {}).get("limits") or {}
        try:
            shares = split_battery_power(slot["power_kw"], client, limits)
        except ModbusError as exc:  # the link is down; the next cycle tries again
            logger.warning("schedule slot not started: %s", exc)
            return False
        plan = Plan()
        plan.lease_battery(shares)
        self.start(slot["command_id"], plan, slot["end"])
        return True
