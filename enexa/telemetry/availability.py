"""Availability of a site per day or month (cut at midnight in the range's time zone): the
share of time it was online (from its online/offline transitions) and the share of its
chargers' reports that found them in service (any status but `faulted` and `unavailable`), per
charger and overall."""

# Raw SQL here interpolates only table names and fixed SQL from code; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from shared.fields import format_timestamp

from .models import ChargerValue, SiteStatusTransition, TelemetryReading
from .periods import (
    PeriodRange,
    boundaries,
    bucket_seconds,
    bucket_sql,
    period_index,
    periods_of,
)
from .storage import _table, adapt_ts, as_utc

AVAILABILITY_PERIODS = ("day", "month")
OUT_OF_SERVICE = ("faulted", "unavailable")


def _online_intervals(site_pk: int, start: datetime, end: datetime):
    """(known_since, [(from, to)] online) within [start, end): the state at `start` is that of
    the newest transition before it; before a site's first transition nothing is known."""
    transitions = SiteStatusTransition.objects.filter(site_id=site_pk)
    before = transitions.filter(at__lt=start).order_by("-at").values_list("at", "online").first()
    during = list(
        transitions.filter(at__gte=start, at__lt=end).order_by("at").values_list("at", "online")
    )
    if before is None and not during:
        return None, []
    known_since = start if before is not None else during[0][0]
    online_since = known_since if before is not None and before[1] else None
    intervals = []
    for at, online in during:
        if online and online_since is None:
            online_since = at
        elif not online and online_since is not None:
            intervals.append((online_since, at))
            online_since = None
    if online_since is not None:
        intervals.append((online_since, end))
    return known_since, intervals


def _overlap_s(a: datetime, b: datetime, c: datetime, d: datetime) -> float:
    return max(0.0, (min(b, d) - max(a, c)).total_seconds())


def _chargers_in_service(
    site_pk: int, rng: PeriodRange, cuts: list[datetime]
) -> dict[int, dict[str, list[int]]]:
    """Per period (its index in `cuts`, the range's boundaries) and charger: [reports in
    service, reports], counted in the database per bucket."""
    readings, chargers = _table(TelemetryReading), _table(ChargerValue)
    out_of_service = ", ".join("%s" for _ in OUT_OF_SERVICE)
    sql = (
        f"SELECT {bucket_sql(bucket_seconds(cuts))} AS bucket, code, "
        f"SUM(CASE WHEN status IN ({out_of_service}) THEN 0 ELSE 1 END), COUNT(*) FROM ("
        "SELECT r.timestamp AS ts, c.charger_code AS code, c.status AS status "
        f"FROM {readings} r JOIN {chargers} c ON c.reading_id = r.id "
        "WHERE r.site_id = %s AND r.timestamp >= %s AND r.timestamp < %s AND c.status <> ''"
        ") AS s GROUP BY bucket, code"
    )
    counts: dict[int, dict[str, list[int]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [*OUT_OF_SERVICE, site_pk, adapt_ts(rng.start), adapt_ts(rng.end)])
        for bucket, code, in_service, reports in cursor.fetchall():
            period = counts.setdefault(period_index(cuts, as_utc(bucket)), {})
            total = period.setdefault(code, [0, 0])
            total[0] += int(in_service)
            total[1] += int(reports)
    return counts


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 3) if whole else None


def site_availability(
    site_pk: int, rng: PeriodRange, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Per period of the range: seconds observed (known and past) and online, the online
    share, and the chargers' in-service share (overall and per charger; null without
    reports)."""
    now = now or timezone.now()
    horizon = min(rng.end, now)
    known_since, intervals = _online_intervals(site_pk, rng.start, horizon)
    cuts = boundaries(rng)
    chargers = _chargers_in_service(site_pk, rng, cuts)
    out = []
    for index, (begins, ends) in enumerate(periods_of(rng, cuts)):
        observed_s = (
            _overlap_s(begins, ends, known_since, horizon) if known_since is not None else 0.0
        )
        online_s = sum(_overlap_s(begins, ends, a, b) for a, b in intervals)
        counts = chargers.get(index, {})
        out.append(
            {
                "start": format_timestamp(begins),
                "end": format_timestamp(ends),
                "observed_s": round(observed_s, 3),
                "online_s": round(online_s, 3),
                "online_pct": _pct(online_s, observed_s),
                "chargers_available_pct": _pct(
                    sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
                ),
                "chargers": {code: _pct(*counts[code]) for code in sorted(counts)},
            }
        )
    return out
