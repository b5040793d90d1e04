"""Faults the simulator can inject: dropped connections, exceptions, delays, undefined values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FaultPlan:
    """What to do wrong, changed by tests while the simulator runs (plain attribute writes)."""

    exception_for: set[str] = field(default_factory=set)  # register names answered with exception 4
    delay_s: float = 0.0  # real seconds added before every answer
    undefined: set[str] = field(default_factory=set)  # register names served as "undefined"
    _dropper: Callable[[], None] | None = field(default=None, repr=False)

    def drop_connections(self) -> None:
        """Close every open client connection now (clients must reconnect)."""
        if self._dropper is not None:
            self._dropper()

    def clear(self) -> None:
        self.exception_for = set()
        self.undefined = set()
        self.delay_s = 0.0
