"""The periods of a site's figures: a range cut into UTC hours, or into days or months at
midnight in a time zone (the site's unless the caller names another), as UTC instants; and the
SQL buckets that the database groups rows into, fine enough that each lies within one period."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.utils import timezone

from enexa.core.errors import InvalidInput
from enexa.registry.models import timezone_names
from shared.fields import read_range

PERIODS = ("hour", "day", "month")
DEFAULT_SPAN = {"hour": timedelta(days=1), "day": timedelta(days=31), "month": timedelta(days=366)}
# Periods one request may cover: ten thousand hours is over a year.
MAX_PERIODS = 10_000
PERIOD_SECONDS = {"hour": 3600, "day": 86400, "month": 28 * 86400}
TZ_ERROR = "Must be an IANA time zone name, e.g. Europe/Berlin or UTC."


@dataclass(frozen=True)
class PeriodRange:
    """A validated request for figures per period: [start, end) in periods of `period`, days
    and months cut at midnight in the IANA time zone `tz`."""

    start: datetime
    end: datetime
    period: str
    tz: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


def zone_name(name: str) -> str:
    """`name` when it is an IANA time zone, else UTC (a site's zone is validated when written;
    this keeps a row written around the validation from breaking its reports)."""
    return name if name in timezone_names() else "UTC"


def parse_period_range(
    params: Any,
    *,
    periods: tuple[str, ...] = PERIODS,
    now: datetime | None = None,
    default_tz: str = "UTC",
) -> PeriodRange:
    """`from`, `to` (RFC 3339), `period` (one of `periods`; default day) and `tz` (an IANA
    name; default `default_tz`). Without `from` the range is the last day (hours), month
    (days) or year (months) before `to` (default now); at most MAX_PERIODS periods."""
    errors: dict[str, list[str]] = {}
    period = params.get("period") or "day"
    if period not in periods:
        errors["period"] = ["Must be one of: " + ", ".join(periods) + "."]
        period = "day"
    tz = params.get("tz") or zone_name(default_tz)
    if tz not in timezone_names():
        errors["tz"] = [TZ_ERROR]
    start, end = read_range(params, errors)
    end = end or now or timezone.now()
    start = start or end - DEFAULT_SPAN[period]
    if "from" not in errors and "to" not in errors:
        if start >= end:
            errors["from"] = ["Must be before `to`."]
        elif (end - start).total_seconds() / PERIOD_SECONDS[period] > MAX_PERIODS:
            errors["from"] = [f"The range holds more than {MAX_PERIODS} periods of a {period}."]
    if errors:
        raise InvalidInput("The range, period or time zone is invalid.", errors)
    return PeriodRange(start.astimezone(UTC), end.astimezone(UTC), period, tz)


def first_instant(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of the local date `day`, in UTC: its midnight, or where a clock change
    skips midnight (America/Sao_Paulo until 2019, Pacific/Apia's lost 2011-12-30) the instant
    of the jump. A skipped wall time with fold=0 is placed by the offset before the change,
    which is that instant when the skipped hours begin at midnight, as every such change in
    the time zone database does (checked for every zone from 1970 to 2040; the property test
    of the periods keeps checking)."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _first_day(local: date, period: str) -> date:
    return local.replace(day=1) if period == "month" else local


def _next_day(local: date, period: str) -> date:
    if period == "day":
        return local + timedelta(days=1)
    year, month = divmod(local.month, 12)
    return date(local.year + year, month + 1, 1)


def period_start(at: datetime, period: str, zone: ZoneInfo) -> datetime:
    """The start (UTC) of the UTC hour, or the local day or month, holding `at`."""
    if period == "hour":
        return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return first_instant(_first_day(at.astimezone(zone).date(), period), zone)


def next_period(begins: datetime, period: str, zone: ZoneInfo) -> datetime:
    """The start (UTC) of the period after the one starting at `begins`."""
    if period == "hour":
        return begins + timedelta(hours=1)
    # From the local date at `begins`, not the period's own: a skipped date (Pacific/Apia's
    # 2011-12-30) begins at the same instant as the next one and so is no period.
    return first_instant(
        _next_day(_first_day(begins.astimezone(zone).date(), period), period), zone
    )


def boundaries(rng: PeriodRange) -> list[datetime]:
    """The starts of the periods meeting [rng.start, rng.end) and the end of the last one: the
    first at or before rng.start, the last at or after rng.end."""
    zone = rng.zone
    out = [period_start(rng.start, rng.period, zone)]
    while out[-1] < rng.end:
        out.append(next_period(out[-1], rng.period, zone))
    return out


def periods_of(
    rng: PeriodRange, cuts: list[datetime] | None = None
) -> Iterator[tuple[datetime, datetime]]:
    """The periods meeting [rng.start, rng.end), each clipped to it (`cuts`: its boundaries,
    when already known)."""
    cuts = cuts or boundaries(rng)
    for begins, ends in zip(cuts, cuts[1:], strict=False):
        yield max(begins, rng.start), min(ends, rng.end)


def bucket_seconds(cuts: Iterable[datetime]) -> int:
    """The longest bucket (a divisor of a day; buckets begin at the Unix epoch) that every cut
    falls on the edge of, so that each bucket lies within one period: a UTC day for UTC days
    and months, an hour for hours and for zones whose offsets are whole hours, 30 minutes for
    Asia/Kolkata, and so on. The fewer buckets, the fewer rows the database hands back."""
    step = 86400
    for cut in cuts:
        step = math.gcd(step, int(cut.timestamp()) % 86400)
    return step


def bucket_sql(step_s: int) -> str:
    """SQL for the start (UTC) of the `step_s`-second bucket holding the column `ts`; buckets are
    aligned on the Unix epoch, so UTC days for 86400 and whole hours for 3600. For a query
    run with parameters (the `%%` is a literal `%` there)."""
    if connection.vendor == "postgresql":
        return f"to_timestamp(floor(EXTRACT(EPOCH FROM ts) / {step_s}) * {step_s})"
    seconds = "CAST(strftime('%%s', ts) AS INTEGER)"
    return f"datetime({seconds} / {step_s} * {step_s}, 'unixepoch')"


def period_index(cuts: list[datetime], at: datetime) -> int:
    """Which period of `cuts` holds `at` (0 the first)."""
    return bisect_right(cuts, at) - 1
