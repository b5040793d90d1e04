"""A site's health as its gateway sees it (Modbus link, watchdog, buffer, mode, commands), for
the API's `GET /v1/health` and the report the gateway sends the backend: no HTTP here."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from amperio.dispatch.autonomy_cycle import ModeTracker
from amperio.state import StateKey
from shared.fields import parse_timestamp

if TYPE_CHECKING:
    from amperio.gateway import Gateway

logger = logging.getLogger(__name__)

# Without a configuration, the hardware watchdog timeout the gateway assumes.
DEFAULT_WATCHDOG_TIMEOUT_S = 15.0


def _age_s(value: Any, now: datetime) -> float | None:
    moment = parse_timestamp(value)
    return (now - moment).total_seconds() if moment else None


def gateway_health(gw: Gateway, now: datetime | None = None) -> dict[str, Any]:
    """Per site: Modbus link and last read, watchdog beat, buffer depth, mode; Enexa reachable."""
    now = now or datetime.now(UTC)
    state = gw.state.snapshot()
    depth = buffer_depth(gw)
    # A beat older than the hardware timeout means the unit has fallen back to its safe state.
    beat_age = _age_s(state.get(StateKey.WATCHDOG_LAST_BEAT_AT), now)
    watchdog_ok = beat_age is not None and beat_age <= watchdog_timeout_s(gw)
    link_up = bool(state.get(StateKey.MODBUS_LINK_UP))
    enexa_reachable = bool(state.get(StateKey.ENEXA_REACHABLE))
    site: dict[str, Any] = {
        "modbus": {"link_up": link_up, "last_read_at": state.get(StateKey.MODBUS_LAST_READ_AT)},
        "watchdog": {
            "last_beat_at": state.get(StateKey.WATCHDOG_LAST_BEAT_AT),
            "beating": watchdog_ok,
            "withheld": state.get(StateKey.WATCHDOG_WITHHELD),
        },
        "buffer": {"depth": depth.get("readings", 0) + depth.get("events", 0), **depth},
        "mode": state.get(StateKey.MODE) or "auto",
        # normal, schedule (following the last schedule) or safe_local, while Enexa is away.
        "autonomy": ModeTracker.stored_mode(state),
        "config_version": state.get(StateKey.CONFIG_VERSION),
        "firmware_version": state.get(StateKey.FIRMWARE_VERSION),
        # queued, stuck (recovery cannot finish them), failed, last_failure
        "commands": gw.commands().health(now),
    }
    stuck = site["commands"]["stuck"] > 0
    ok = link_up and watchdog_ok and enexa_reachable and not stuck
    return {
        "status": "ok" if ok else "degraded",
        "sites": {gw.settings.site_id: site},
        "enexa": {"reachable": enexa_reachable, "last_ok_at": state.get(StateKey.ENEXA_LAST_OK_AT)},
    }


def buffer_depth(gw: Gateway) -> dict[str, Any]:
    """The outbox's depth; empty counts while no outbox exists yet."""
    if not gw.settings.outbox_path.exists():
        return {"readings": 0, "events": 0}
    try:
        depth: dict[str, Any] = gw.outbox().depth()
        return depth
    except Exception:  # noqa: BLE001 - health must answer even when the outbox cannot
        logger.exception("outbox depth unavailable")
        return {"readings": 0, "events": 0, "error": "unavailable"}


def watchdog_timeout_s(gw: Gateway) -> float:
    try:
        watchdog = gw.config()["settings"]["watchdog"]
        return float(watchdog.get("timeout_s") or DEFAULT_WATCHDOG_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - health must answer without a configuration
        return DEFAULT_WATCHDOG_TIMEOUT_S
