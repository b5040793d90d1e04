"""The request-id header and the metrics bearer token under hostile input: a caller's id is
kept only when it is safe to log, and only the exact token opens /metrics."""

import logging

from hypothesis import given
from hypothesis import strategies as st

from shared.logs import (
    VALID_REQUEST_ID,
    JsonFormatter,
    RequestIdFilter,
    accept_request_id,
    request_context,
    task_request_id,
)
from shared.metrics import bearer_ok, refusal
from tests.hostile import hostile_text

anything = st.one_of(st.none(), st.integers(), hostile_text, st.text(max_size=200))


@given(anything)
def test_a_request_id_is_the_callers_only_when_plausible_and_never_spans_lines(value):
    accepted = accept_request_id(value)
    assert VALID_REQUEST_ID.fullmatch(accepted)
    assert "\n" not in accepted and "\r" not in accepted
    if isinstance(value, str) and VALID_REQUEST_ID.fullmatch(value):
        assert accepted == value
    else:
        assert len(accepted) == 32 and accepted != value


@given(st.from_regex(VALID_REQUEST_ID, fullmatch=True))
def test_a_plausible_id_survives_the_trip_through_a_task_header_and_a_json_log(request_id):
    class Request:
        pass

    request = Request()
    request.request_id = request_id
    assert task_request_id(request) == request_id
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    with request_context(request_id):
        RequestIdFilter().filter(record)
    assert f'"request_id": "{request_id}"' in JsonFormatter().format(record)


@given(anything)
def test_a_task_header_that_is_not_a_plausible_id_is_ignored(value):
    class Request:
        headers = {"request_id": value}

    expected = value if isinstance(value, str) and VALID_REQUEST_ID.fullmatch(value) else None
    assert task_request_id(Request()) == expected


# A token is what an environment variable holds: no whitespace or control characters.
token_text = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=60)


@given(st.text(max_size=100), token_text)
def test_only_the_exact_bearer_token_opens_the_metrics(header, token):
    opened = bearer_ok(header, token)
    scheme, _, given_token = header.partition(" ")
    assert opened == (scheme.lower() == "bearer" and given_token.strip() == token)
    assert (refusal(header, token) is None) == opened
    assert bearer_ok(f"Bearer {token}", token)


@given(st.text(max_size=100))
def test_without_a_token_configured_the_metrics_are_open(header):
    assert bearer_ok(header, "") and refusal(header, "") is None
