"""The gateway's status report to Enexa, and its record of whether Enexa is reachable."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime
from typing import Any

from amperio.enexa_link.client import EnexaClient, EnexaError, EnexaUnavailable
from amperio.settings import Settings
from amperio.state import GatewayState, StateKey
from shared.fields import format_timestamp, parse_timestamp
from shared.status import StatusReport

log = logging.getLogger(__name__)

DEFAULT_FIRMWARE_VERSION = "1.0.0"


def note_enexa_reachable(state: GatewayState, now: datetime) -> None:
    """Enexa answered: autonomy and health read these keys."""
    state.update(
        {
            StateKey.ENEXA_REACHABLE: True,
            StateKey.ENEXA_LAST_OK_AT: format_timestamp(now),
            StateKey.ENEXA_UNREACHABLE_SINCE: None,
        }
    )


def note_enexa_unreachable(state: GatewayState, now: datetime, error: str) -> None:
    """Enexa did not answer; `enexa_unreachable_since` keeps the start of the outage."""
    state.update(
        {
            StateKey.ENEXA_REACHABLE: False,
            StateKey.ENEXA_UNREACHABLE_SINCE: state.get(StateKey.ENEXA_UNREACHABLE_SINCE)
            or format_timestamp(now),
            StateKey.ENEXA_ERROR: error[:500],
        }
    )


def enexa_unreachable_for_s(state: GatewayState, now: datetime) -> float:
    """How long Enexa has been unreachable (0 while it answers)."""
    since = parse_timestamp(state.get(StateKey.ENEXA_UNREACHABLE_SINCE))
    return max(0.0, (now - since).total_seconds()) if since else 0.0


def firmware_version(state: GatewayState) -> str:
    return (
        state.get(StateKey.FIRMWARE_VERSION)
        or os.environ.get("AMPERIO_FIRMWARE_VERSION")
        or DEFAULT_FIRMWARE_VERSION
    )


def build_status(
    settings: Settings, state: GatewayState, now: datetime, buffer_depth: int | None
) -> dict[str, Any]:
    """The status report in wire form, checked against the shared schema."""
    report = StatusReport(
        site_id=settings.site_id,
        online=True,
        timestamp=now,
        controller_id=state.get(StateKey.CONTROLLER_ID),
        config_version=state.get(StateKey.CONFIG_VERSION),
        firmware_version=firmware_version(state),
        mode=state.get(StateKey.MODE) or "auto",
        modbus_link_up=state.get(StateKey.MODBUS_LINK_UP),
        buffer_depth=buffer_depth,
        message_id=str(uuid.uuid4()),
    )
    return StatusReport.from_dict(report.to_dict()).to_dict()


def status_due(state: GatewayState, config: dict[str, Any], now: datetime) -> bool:
    """Whether a status report is due: `status.interval_s` since the last one was sent (or
    tried), or the applied configuration version changed since, so Enexa learns it at once."""
    last = parse_timestamp(state.get(StateKey.STATUS_SENT_AT))
    if last is None or state.get(StateKey.CONFIG_VERSION) != state.get(
        StateKey.STATUS_SENT_CONFIG_VERSION
    ):
        return True
    interval_s = float(config["settings"]["status"]["interval_s"])
    elapsed = (now - last).total_seconds()
    return elapsed >= interval_s or elapsed < 0  # a clock set back must not silence reports


def report_status(
    client: EnexaClient,
    settings: Settings,
    state: GatewayState,
    now: datetime,
    buffer_depth: int | None = None,
) -> bool:
    """Post the status directly (it is a snapshot, not worth buffering); False if Enexa is down.
    The attempt is recorded either way: an outage is not retried faster than the interval."""
    report = build_status(settings, state, now, buffer_depth)
    state.update(
        {
            StateKey.STATUS_SENT_AT: format_timestamp(now),
            StateKey.STATUS_SENT_CONFIG_VERSION: report.get("config_version"),
        }
    )
    try:
        client.post_status(report)
    except EnexaUnavailable as exc:
        note_enexa_unreachable(state, now, str(exc))
        return False
    except EnexaError as exc:
        # Enexa answered, so it is reachable; a refusal (e.g. a revoked key) is logged.
        log.error("Status report refused (site %s): %s", settings.site_id, exc)
        note_enexa_reachable(state, now)
        return False
    note_enexa_reachable(state, now)
    return True
