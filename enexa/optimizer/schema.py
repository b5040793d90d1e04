"""The wire shape of a site's prices (`PUT /v1/sites/{id}/prices`), read with every error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.fields import Reader, format_timestamp, parse
from shared.site_config import PRICE_RANGE

# A month of 15-minute slots in one request; longer ranges go in several.
MAX_PRICE_SLOTS = 96 * 31
# A price holds for at least a minute and at most a day (15-minute and hourly markets fit).
MIN_SLOT = timedelta(minutes=1)
MAX_SLOT = timedelta(days=1)
CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class PriceSlotIn:
    """One slot's prices per kWh."""

    start: datetime
    end: datetime
    import_price: float
    export_price: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": format_timestamp(self.start),
            "end": format_timestamp(self.end),
            "import_price": self.import_price,
            "export_price": self.export_price,
        }


@dataclass(frozen=True)
class PriceSchedule:
    """Prices of consecutive or scattered slots, sorted, none overlapping."""

    currency: str
    slots: tuple[PriceSlotIn, ...]

    @property
    def start(self) -> datetime:
        return self.slots[0].start

    @property
    def end(self) -> datetime:
        return max(slot.end for slot in self.slots)

    @classmethod
    def from_dict(cls, data: Any) -> PriceSchedule:
        return parse(cls.read, data)

    @classmethod
    def read(cls, r: Reader) -> PriceSchedule:
        currency = r.string("currency", required=True, max_length=3)
        if currency is not None and not CURRENCY.match(currency):
            r.error("currency", "Must be an ISO 4217 code in capitals, e.g. EUR.")
        readers = r.items("slots", max_items=MAX_PRICE_SLOTS)
        if not readers and "slots" not in r.errors:
            r.error("slots", "At least one slot is required.")
        slots = []
        for s in readers:
            start, end = s.timestamp("start", required=True), s.timestamp("end", required=True)
            low, high = PRICE_RANGE
            buy = s.number("import_price", required=True, minimum=low, maximum=high)
            sell = s.number("export_price", required=True, minimum=low, maximum=high)
            if start and end and not MIN_SLOT <= end - start <= MAX_SLOT:
                s.error("end", "Must be 1 minute to 24 hours after start.")
            elif start and end and buy is not None and sell is not None:
                slots.append(PriceSlotIn(start, end, buy, sell))
        slots.sort(key=lambda slot: slot.start)
        for before, after in zip(slots, slots[1:], strict=False):
            if after.start < before.end:
                r.error("slots", f"Slots overlap at {format_timestamp(after.start)}.")
                break
        return cls(currency or "", tuple(slots))

    def to_dict(self) -> dict[str, Any]:
        return {"currency": self.currency, "slots": [slot.to_dict() for slot in self.slots]}
