"""The rate format both sides read and the in-process counter they fall back on."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.ratelimit import LocalCounters, parse_rate


@given(st.text(max_size=30))
def test_any_rate_text_is_a_count_and_a_positive_window_or_a_value_error(text):
    try:
        count, window_s = parse_rate(text)
    except ValueError as exc:
        assert "is not a rate" in str(exc)
        return
    assert count >= 0 and window_s > 0


@pytest.mark.parametrize(
    ("rate", "expected"),
    [("100/min", (100, 60)), ("10/5m", (10, 300)), (" 3 / 2 hour ", (3, 7200))],
)
def test_a_rate_reads_as_calls_per_window(rate, expected):
    assert parse_rate(rate) == expected


@given(st.lists(st.integers(1, 5), max_size=40), st.integers(0, 20))
def test_a_call_passes_exactly_when_it_fits_what_is_left_of_the_limit(costs, limit):
    counters = LocalCounters()
    used = 0
    for cost in costs:
        allowed, _ = counters.check_and_add("k", cost, limit, 3600)
        assert allowed == (used + cost <= limit)
        used += cost if allowed else 0  # a refused call counts nothing
    assert counters.peek("k")[0] == used


def test_a_key_never_counted_peeks_as_no_window():
    assert LocalCounters().peek("nobody") == (0, 0.0)
