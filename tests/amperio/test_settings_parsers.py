"""Amperio's settings parsers (service tokens, rate limits, the backlog delay) under any value:
each returns what the API and the flusher can use or raises ValueError with a message that
names the setting, and a token's secret never appears in that message (it may reach a log)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from amperio.settings import (
    DEFAULT_RATE_LIMITS,
    _range,
    parse_rate_limits,
    parse_service_tokens,
)

name = st.from_regex(r"\A[a-z][a-z0-9_-]{0,15}\Z")
secret = st.from_regex(r"\A[A-Za-z0-9_-]{8,40}\Z")
expiry = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_any_service_tokens_value_parses_or_fails_with_a_message_free_of_secrets(value):
    try:
        tokens = parse_service_tokens(value)
    except ValueError as exc:
        assert "AMPERIO_SERVICE_TOKENS" in str(exc)
        for entry in value.split(","):
            parts = entry.strip().split(":")
            if len(parts) >= 2 and len(parts[1]) >= 6:
                assert parts[1] not in str(exc)
        return
    for token in tokens:
        assert token.name and token.secret
        assert "secret" not in repr(token)
        assert token.expires_at is None or token.expires_at.tzinfo is not None


@given(st.lists(st.tuples(name, secret, st.none() | expiry), min_size=1, max_size=5))
def test_named_tokens_with_and_without_expiry_come_back_as_written(entries):
    value = ",".join(f"{n}:{s}" + (f":{e.isoformat()}" if e else "") for n, s, e in entries)
    tokens = parse_service_tokens(value)
    assert [(t.name, t.secret, t.expires_at) for t in tokens] == entries


@given(secret, st.text(min_size=1, max_size=20).filter(lambda t: ":" not in t and "," not in t))
def test_a_bad_expiry_names_the_token_and_never_shows_its_secret(token_secret, bad):
    try:
        datetime.fromisoformat(bad.strip().replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return  # a valid date after all
    with pytest.raises(ValueError) as caught:
        parse_service_tokens(f"enexa:{token_secret}:{bad}")
    assert "enexa" in str(caught.value)
    assert token_secret not in str(caught.value)


def test_an_expiry_passes_at_its_moment():
    at = datetime(2030, 1, 1, tzinfo=UTC)
    (token,) = parse_service_tokens(f"enexa:s3cretvalue:{at.isoformat()}")
    assert not token.expired(at - timedelta(seconds=1))
    assert token.expired(at)


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_any_rate_limits_value_gives_every_scope_a_positive_window_or_fails_naming_it(value):
    try:
        limits = parse_rate_limits(value)
    except ValueError as exc:
        assert "AMPERIO_RATE_LIMITS" in str(exc) or "is not a rate" in str(exc)
        return
    assert set(limits) == set(DEFAULT_RATE_LIMITS)
    for limit in limits.values():
        assert limit is None or (limit[0] >= 0 and limit[1] > 0)


@given(
    st.sampled_from(sorted(DEFAULT_RATE_LIMITS)),
    st.integers(0, 10**6),
    st.integers(1, 60),
    st.sampled_from([("s", 1), ("min", 60), ("hour", 3600), ("day", 86400)]),
)
def test_a_written_rate_means_that_many_calls_per_that_window(scope, count, multiple, unit):
    limits = parse_rate_limits(f"{scope}={count}/{multiple}{unit[0]}")
    assert limits[scope] == (count, multiple * unit[1])


@settings(max_examples=300)
# What an environment can hold: no NUL, no lone surrogate.
@given(
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
)
@example("0,inf")
@example("nan,1")
@example("2,1")
def test_any_backlog_delay_is_a_finite_range_from_zero_up_or_fails_naming_the_setting(value):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AMPERIO_BACKLOG_DELAY_S", value)
        try:
            low, high = _range("AMPERIO_BACKLOG_DELAY_S", (1.0, 2.0))
        except ValueError as exc:
            assert "AMPERIO_BACKLOG_DELAY_S" in str(exc)
            return
    assert 0 <= low <= high < float("inf")
