"""The load forecast from a site's own history, and its error against what then happened."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enexa.optimizer.forecast import forecast_error, forecast_load

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday, 00:00 UTC
SLOT = timedelta(minutes=15)


def weekly_history(weeks: int, load_of) -> list[tuple[datetime, float]]:
    """A reading every 15 minutes over `weeks` weeks before MONDAY, `load_of(week, slot)` kW,
    where week 1 is the latest and slot counts 15-minute slots from Monday 00:00."""
    points = []
    for week in range(1, weeks + 1):
        for slot in range(7 * 96):
            points.append((MONDAY - week * timedelta(weeks=1) + slot * SLOT, load_of(week, slot)))
    return points


def test_each_slot_is_the_mean_of_the_same_weekday_and_time_over_the_last_four_weeks():
    history = weekly_history(6, lambda week, slot: 10.0 * week + slot % 96)
    forecast = forecast_load(history, MONDAY, 96)
    # Weeks 1-4 count (mean 25 kW on top of the time of day); weeks 5 and 6 do not.
    assert forecast == pytest.approx([25.0 + slot for slot in range(96)])


def test_a_weekday_pattern_is_kept_apart_from_other_days():
    history = weekly_history(4, lambda week, slot: 100.0 if slot // 96 == 1 else 20.0)
    forecast = forecast_load(history, MONDAY + timedelta(hours=12), 96)
    # 12:00 Monday to 12:00 Tuesday: Monday afternoon at 20 kW, Tuesday morning at 100 kW.
    assert forecast == pytest.approx([20.0] * 48 + [100.0] * 48)


def test_the_number_of_weeks_is_a_parameter():
    history = weekly_history(4, lambda week, slot: 10.0 * week)
    assert forecast_load(history, MONDAY, 4, weeks=1) == pytest.approx([10.0] * 4)
    assert forecast_load(history, MONDAY, 4, weeks=2) == pytest.approx([15.0] * 4)


def test_a_new_site_gets_its_average_of_the_last_day():
    history = [(MONDAY - timedelta(hours=h), 40.0) for h in range(1, 24)]
    history += [(MONDAY - timedelta(hours=30), 1000.0)]  # older than a day: not counted
    assert forecast_load(history, MONDAY, 8) == pytest.approx([40.0] * 8)


def test_slots_without_last_weeks_readings_fall_back_to_the_recent_average():
    # Two days of history: Saturday at 30 kW, Sunday at 50 kW.
    history = [
        (MONDAY - timedelta(days=2) + i * SLOT, 30.0 if i < 96 else 50.0) for i in range(192)
    ]
    # Monday has no Monday a week before: the last 24 hours' average (Sunday's) stands in.
    assert forecast_load(history, MONDAY, 96) == pytest.approx([50.0] * 96)
    # The next Saturday has last Saturday.
    assert forecast_load(history, MONDAY + timedelta(days=5), 96) == pytest.approx([30.0] * 96)


def test_no_history_forecasts_no_load():
    assert forecast_load([], MONDAY, 96) == (0.0,) * 96


def test_readings_at_or_after_the_start_are_not_used():
    history = [(MONDAY - timedelta(hours=1), 10.0), (MONDAY, 500.0), (MONDAY + SLOT, 500.0)]
    assert forecast_load(history, MONDAY, 2) == pytest.approx([10.0, 10.0])


def test_other_time_zones_are_the_same_instants():
    cet = timezone(timedelta(hours=1))
    history = weekly_history(4, lambda week, slot: float(slot % 96))
    shifted = [(at.astimezone(cet), kw) for at, kw in history]
    assert forecast_load(shifted, MONDAY.astimezone(cet), 96) == forecast_load(history, MONDAY, 96)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        forecast_load([], datetime(2026, 11, 30), 4)  # noqa: DTZ001
    with pytest.raises(ValueError, match="aware"):
        forecast_load([(datetime(2026, 11, 29), 1.0)], MONDAY, 4)  # noqa: DTZ001


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-40 * 96 * 7, -1), st.floats(0, 1000)), min_size=0, max_size=200
    ),
    st.integers(0, 700),  # up to a week and more
)
def test_a_forecast_lies_within_the_loads_seen(points, slots):
    history = [(MONDAY + i * SLOT, kw) for i, kw in points]
    forecast = forecast_load(history, MONDAY, slots)
    assert len(forecast) == slots
    loads = [kw for _, kw in points]
    low, high = (min(loads), max(loads)) if loads else (0.0, 0.0)
    assert all(low - 1e-9 <= x <= high + 1e-9 for x in forecast)


def test_the_error_figures_of_a_forecast():
    error = forecast_error([10.0, 20.0, 30.0, 0.0], [12.0, 20.0, 24.0, 4.0])
    assert error.slots == 4
    assert error.mae_kw == pytest.approx((2 + 0 + 6 + 4) / 4)
    assert error.rmse_kw == pytest.approx(((4 + 0 + 36 + 16) / 4) ** 0.5)
    assert error.bias_kw == pytest.approx((-2 + 0 + 6 - 4) / 4)
    assert error.wape_pct == pytest.approx(100 * 12 / 60)
    assert error.mape_pct == pytest.approx(100 * (2 / 12 + 0 + 6 / 24 + 4 / 4) / 4)


def test_zero_actual_load_leaves_the_percentages_defined_or_none():
    with_zeros = forecast_error([5.0, 10.0], [0.0, 10.0])
    assert with_zeros.mape_pct == pytest.approx(0.0)  # the zero slot is left out
    assert with_zeros.wape_pct == pytest.approx(50.0)
    all_zero = forecast_error([1.0, 0.0], [0.0, 0.0])
    assert all_zero.mape_pct is None and all_zero.wape_pct is None
    assert all_zero.mae_kw == pytest.approx(0.5)
    assert forecast_error([], []).slots == 0


def test_a_week_long_forecast_follows_each_weekday():
    history = weekly_history(4, lambda week, slot: float(slot // 96))  # the weekday's number
    forecast = forecast_load(history, MONDAY, 7 * 96)
    assert forecast == pytest.approx([float(slot // 96) for slot in range(7 * 96)])
