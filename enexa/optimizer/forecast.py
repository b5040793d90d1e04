"""The site's load forecast from its own history, and the forecast's error: pure functions.

The load in a slot is the mean of the same weekday and time of day over the last weeks; a new
site (no such history yet) gets its recent average, a site without history 0. Datetimes are
time-zone aware; weekdays and times of day are taken in UTC, as the readings are stored."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_WEEKS = 4
DEFAULT_RECENT_HOURS = 24
_WEEK = timedelta(weeks=1)


def forecast_load(
    history: Iterable[tuple[datetime, float]],
    start_at: datetime,
    slots: int,
    slot_minutes: int = 15,
    *,
    weeks: int = DEFAULT_WEEKS,
    recent_hours: float = DEFAULT_RECENT_HOURS,
) -> tuple[float, ...]:
    """The load (kW) for each of `slots` slots from `start_at`, from `(timestamp, load_kw)`
    history: per slot, the mean of the readings in the same slot 1..`weeks` weeks earlier;
    where none exist, the mean of the last `recent_hours` before `start_at` (else of all the
    history before it); 0 with no history. Only readings before `start_at` count. Readings may
    be raw or already averaged per slot (fewer points, the same means when evenly spaced)."""
    if start_at.tzinfo is None:
        raise ValueError("start_at: a time-zone aware datetime")
    if slots < 0 or slot_minutes <= 0 or weeks < 0:
        raise ValueError("slots, weeks: not negative; slot_minutes: positive")
    slot = timedelta(minutes=slot_minutes)
    start_at = start_at.astimezone(UTC)
    past = sorted((at.astimezone(UTC), float(kw)) for at, kw in history if _aware(at) < start_at)
    if not past:
        return (0.0,) * slots
    recent_from = start_at - timedelta(hours=recent_hours)
    recent = [kw for at, kw in past if at >= recent_from] or [kw for _, kw in past]
    fallback = sum(recent) / len(recent)

    # Sum and count of the readings per slot index relative to start_at: a reading `age` before
    # start_at falls `week * 7 days - age` into the horizon for each week it reaches.
    horizon = slots * slot
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for at, kw in past:
        age = start_at - at
        week = max(1, -(-age // _WEEK))  # the first week back that reaches this reading
        while week <= weeks and (offset := week * _WEEK - age) < horizon:
            index = offset // slot
            sums[index] = sums.get(index, 0.0) + kw
            counts[index] = counts.get(index, 0) + 1
            week += 1
    return tuple(sums[i] / counts[i] if i in counts else fallback for i in range(slots))


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("history: time-zone aware timestamps")
    return at


@dataclass(frozen=True)
class ForecastError:
    """How far a forecast was from what happened, over the slots both have."""

    slots: int
    mae_kw: float  # mean absolute error
    rmse_kw: float  # root mean square error
    # Sum of absolute errors over the sum of actual loads (weighted MAPE): defined as long as
    # the site drew anything; None when every actual value is 0.
    wape_pct: float | None
    # Mean absolute error over slots whose actual load is not ~0 (classic MAPE, zeros skipped).
    mape_pct: float | None
    bias_kw: float  # mean of forecast - actual: + when the forecast was too high


def forecast_error(
    forecast: Sequence[float], actual: Sequence[float], zero_kw: float = 1e-6
) -> ForecastError:
    """The forecast's error against the actual load, slot by slot (the shorter length counts);
    slots whose actual load is within `zero_kw` of 0 are left out of the MAPE only."""
    pairs = list(zip(forecast, actual, strict=False))
    if not pairs:
        return ForecastError(0, 0.0, 0.0, None, None, 0.0)
    errors = [f - a for f, a in pairs]
    n = len(pairs)
    total_actual = sum(abs(a) for _, a in pairs)
    nonzero = [(abs(f - a) / abs(a)) for f, a in pairs if abs(a) > zero_kw]
    return ForecastError(
        slots=n,
        mae_kw=sum(abs(e) for e in errors) / n,
        rmse_kw=math.sqrt(sum(e * e for e in errors) / n),
        wape_pct=(
            100 * sum(abs(e) for e in errors) / total_actual if total_actual > zero_kw else None
        ),
        mape_pct=100 * sum(nonzero) / len(nonzero) if nonzero else None,
        bias_kw=sum(errors) / n,
    )
