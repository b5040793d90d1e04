"""Gateway events (`POST /v1/events`): alarms, mode changes and the buffered outage log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .fields import Reader, format_timestamp, parse

EVENT_KINDS = (
    "alarm",  # a ChargePost alarm bit raised or cleared
    "mode_change",  # auto / manual / safe / autonomous
    "log",  # a line of the gateway's own log kept during an outage
    "buffer",  # the outbox thinned or dropped readings
    "modbus_link",  # the Modbus link went down or came back
    "command",  # a dispatch was applied, rejected, failed or expired
    "firmware",  # firmware download / install progress
    "watchdog",  # the hardware fell back to its safe state
)
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Event:
    """One event; `event_id` makes posting it twice store it once."""

    site_id: str
    event_id: str
    timestamp: datetime
    kind: str
    severity: str = "info"
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, payload: Any) -> Event:
        return parse(cls.read, payload)

    @classmethod
    def read(cls, r: Reader) -> Event:
        return cls(
            site_id=r.string("site_id", required=True, max_length=32) or "",
            event_id=r.string("event_id", required=True, max_length=64) or "",
            timestamp=r.timestamp("timestamp", required=True),  # type: ignore[arg-type]
            kind=r.string("kind", required=True, choices=EVENT_KINDS) or "",
            severity=r.string("severity", choices=SEVERITIES) or "info",
            message=r.string("message", max_length=2000) or "",
            data=r.mapping("data"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "site_id": self.site_id,
            "event_id": self.event_id,
            "timestamp": format_timestamp(self.timestamp),
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
        }
        if self.data:
            out["data"] = self.data
        return out


def new_event(
    site_id: str,
    kind: str,
    message: str,
    timestamp: datetime,
    severity: str = "info",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new event in wire form with a fresh `event_id`, checked as Enexa checks it: raises
    SchemaError for one it would refuse, so the mistake shows where the event is made."""
    event = Event(site_id, str(uuid.uuid4()), timestamp, kind, severity, message, data or {})
    return Event.from_dict(event.to_dict()).to_dict()
