"""The gateway's status report (`POST /v1/status`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .fields import MAX_INT32, Reader, drop_none, format_timestamp, parse

MODES = ("auto", "manual", "safe", "autonomous")


@dataclass(frozen=True)
class StatusReport:
    """What a gateway says of itself; `config_version` is the version it has applied."""

    site_id: str
    online: bool
    timestamp: datetime | None = None
    controller_id: str | None = None
    config_version: int | None = None
    firmware_version: str | None = None
    mode: str | None = None
    modbus_link_up: bool | None = None
    buffer_depth: int | None = None
    message_id: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> StatusReport:
        return parse(cls.read, data)

    @classmethod
    def read(cls, r: Reader) -> StatusReport:
        return cls(
            site_id=r.string("site_id", required=True, max_length=32) or "",
            online=bool(r.boolean("online", required=True)),
            timestamp=r.timestamp("timestamp"),
            controller_id=r.string("controller_id", max_length=32),
            config_version=r.integer("config_version", minimum=0, maximum=MAX_INT32),
            firmware_version=r.string("firmware_version", max_length=40),
            mode=r.string("mode", choices=MODES),
            modbus_link_up=r.boolean("modbus_link_up"),
            buffer_depth=r.integer("buffer_depth", minimum=0, maximum=MAX_INT32),
            message_id=r.string("message_id", max_length=64),
        )

    def to_dict(self) -> dict[str, Any]:
        out = drop_none(self.__dict__.copy())
        if self.timestamp is not None:
            out["timestamp"] = format_timestamp(self.timestamp)
        return out
