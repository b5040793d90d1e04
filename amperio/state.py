"""The gateway's live state (link up, last read, last beat, ...) shared between its processes.

A small key-value table in SQLite, so the worker, the watchdog worker and the API process each
see what the others recorded (the health endpoint reads it)."""

from __future__ import annotations

import json
import sqlite3
from enum import StrEnum
from pathlib import Path
from typing import Any

from amperio.sqlite import Connections


class StateKey(StrEnum):
    """Every key the gateway keeps in its state, named once (the value is the stored key)."""

    ACTIVATED = "activated"
    ALARM_BITS = "alarm_bits"
    AUTONOMY_CAPPED_CHARGERS = "autonomy_capped_chargers"
    AUTONOMY_MODE = "autonomy_mode"
    AUTONOMY_MODE_SINCE = "autonomy_mode_since"
    BUFFER_DEPTH = "buffer_depth"
    CONFIG_APPLIED_AT = "config_applied_at"
    CONFIG_CHECKED_AT = "config_checked_at"
    CONFIG_ERROR = "config_error"
    CONFIG_VERSION = "config_version"
    CONTROL_CYCLE_OK_AT = "control_cycle_ok_at"
    CONTROLLER_ID = "controller_id"
    ENEXA_ERROR = "enexa_error"
    ENEXA_LAST_OK_AT = "enexa_last_ok_at"
    ENEXA_REACHABLE = "enexa_reachable"
    ENEXA_UNREACHABLE_SINCE = "enexa_unreachable_since"
    FIRMWARE_IMAGE_BYTES = "firmware_image_bytes"
    FIRMWARE_INSTALLED_AT = "firmware_installed_at"
    FIRMWARE_PREVIOUS_VERSION = "firmware_previous_version"
    FIRMWARE_VERSION = "firmware_version"
    MODBUS_DOWN_SINCE = "modbus_down_since"
    MODBUS_ERROR = "modbus_error"
    MODBUS_GAPS = "modbus_gaps"
    MODBUS_LAST_READ_AT = "modbus_last_read_at"
    MODBUS_LINK_UP = "modbus_link_up"
    MODE = "mode"
    OUTAGE_LOG = "outage_log"
    SITE_ID = "site_id"
    STATUS_SENT_AT = "status_sent_at"
    STATUS_SENT_CONFIG_VERSION = "status_sent_config_version"
    WATCHDOG_BEATING = "watchdog_beating"
    WATCHDOG_COUNTER = "watchdog_counter"
    WATCHDOG_LAST_BEAT_AT = "watchdog_last_beat_at"
    WATCHDOG_WITHHELD = "watchdog_withheld"


class GatewayState:
    """Key -> JSON value, durable and readable from any process of the gateway."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connections = Connections(self.path, timeout_s=10)
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return self._connections.get()

    def set(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, values: dict[str, Any]) -> None:
        conn = self._connect()
        with conn:
            conn.executemany(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(str(k), json.dumps(v, default=str)) for k, v in values.items()],
            )

    def get(self, key: str, default: Any = None) -> Any:
        row = (
            self._connect().execute("SELECT value FROM state WHERE key = ?", (str(key),)).fetchone()
        )
        return json.loads(row[0]) if row else default

    def snapshot(self) -> dict[str, Any]:
        rows = self._connect().execute("SELECT key, value FROM state").fetchall()
        return {key: json.loads(value) for key, value in rows}
