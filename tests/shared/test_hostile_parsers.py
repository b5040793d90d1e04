"""The shared wire parsers under hostile input: each either returns values every database here
can store, or raises SchemaError naming the fields; nothing else escapes them."""

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.dispatch import DispatchCommand, parse_params
from shared.errors import SchemaError
from shared.events import Event
from shared.fields import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    UNSTORABLE_TEXT,
    Reader,
    find_unstorable_text,
    format_timestamp,
    parse_timestamp,
    read_range,
    read_timestamp,
    split_batch,
)
from shared.status import StatusReport
from shared.telemetry import MAX_CHARGERS_PER_READING, MAX_UNITS_PER_READING, TelemetryReading
from tests.hostile import hostile_number, hostile_text, odd_text

NOW = datetime(2024, 1, 15, 10, 5, tzinfo=UTC)
# Unlike JSON, a parser may be handed NaN and infinity.
number = st.one_of(hostile_number, st.floats())
any_json = st.recursive(
    st.none() | st.booleans() | number | hostile_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=15,
)

VALID = {
    "telemetry": {
        "site_id": "SITE001",
        "timestamp": "2024-01-15T10:00:00Z",
        "message_id": "m-1",
        "battery": {"soc_pct": 50, "power_kw": 10, "units": [{"id": "BAT1", "power_kw": 5}]},
        "grid": {"import_kw": 20},
        "chargers": [{"id": "CHG1", "power_kw": 30, "status": "charging"}],
    },
    "status": {"site_id": "SITE001", "online": True, "timestamp": "2024-01-15T10:00:00Z"},
    "event": {
        "site_id": "SITE001",
        "event_id": "e-1",
        "timestamp": "2024-01-15T10:00:00Z",
        "kind": "alarm",
        "data": {"bit": 3},
    },
    "dispatch": {
        "site_id": "SITE001",
        "command": "apply_schedule",
        "timestamp": "2024-01-15T10:00:00Z",
        "params": {
            "slots": [
                {"start": "2024-01-15T11:00:00Z", "end": "2024-01-15T12:00:00Z", "power_kw": 5}
            ]
        },
    },
}
PARSERS = {
    "telemetry": lambda data: TelemetryReading.from_dict(data, now=NOW),
    "status": StatusReport.from_dict,
    "event": Event.from_dict,
    "dispatch": DispatchCommand.from_dict,
}


def leaves(value, path=()):
    """(path, value) of every scalar inside a parsed wire object (dataclasses and all)."""
    if hasattr(value, "__dataclass_fields__"):
        value = value.__dict__
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,), key
            yield from leaves(item, path + (key,))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from leaves(item, path + (index,))
    else:
        yield path, value


def assert_storable(parsed) -> None:
    for path, value in leaves(parsed):
        if isinstance(value, str):
            assert not UNSTORABLE_TEXT.search(value), path
        elif isinstance(value, float):
            assert math.isfinite(value), path
        elif isinstance(value, datetime):
            assert EARLIEST_TIMESTAMP <= value <= LATEST_TIMESTAMP, path


def mutate(document: dict, path: tuple, value) -> dict:
    out = json.loads(json.dumps(document))
    node = out
    for step in path[:-1]:
        child = node.get(step) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            child = node[step] = {}
        node = child
    node[path[-1]] = value
    return out


def paths_of(document: dict, prefix=()) -> list[tuple]:
    out = []
    for key, value in document.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out.extend(paths_of(value, prefix + (key,)))
    return out


def parse_or_refuse(kind: str, data) -> None:
    """The property: parsed and storable, or SchemaError with reasons under storable keys."""
    try:
        parsed = PARSERS[kind](data)
    except SchemaError as exc:
        assert exc.errors
        assert all(messages for messages in exc.errors.values())
        assert find_unstorable_text(exc.errors) is None
        return
    assert_storable(parsed)
    if kind == "telemetry" and parsed.battery is not None:
        assert len(parsed.battery.units) <= MAX_UNITS_PER_READING
    if kind == "telemetry":
        assert len(parsed.chargers) <= MAX_CHARGERS_PER_READING


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(PARSERS)), any_json)
def test_any_json_value_is_parsed_into_storable_values_or_refused_with_reasons(kind, data):
    parse_or_refuse(kind, data)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_valid_document_with_one_hostile_value_is_parsed_storable_or_refused(data):
    kind = data.draw(st.sampled_from(sorted(VALID)))
    path = data.draw(st.sampled_from(paths_of(VALID[kind])))
    value = data.draw(st.one_of(odd_text, number, any_json))
    parse_or_refuse(kind, mutate(VALID[kind], path, value))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=6), any_json)
def test_any_command_parameters_are_parsed_or_refused(command, params):
    try:
        parse_params(command, params)
    except SchemaError as exc:
        assert exc.errors


@settings(max_examples=50, deadline=None)
@given(any_json)
def test_any_envelope_is_split_or_refused(data):
    try:
        items, is_batch = split_batch(data)
    except SchemaError:
        return
    assert isinstance(items, list) and (is_batch or items == [data])


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "9999-06-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
    ],
)
def test_a_timestamp_past_the_calendar_or_outside_the_wire_range_is_refused_with_why(value):
    parsed, message = read_timestamp(value)
    assert parsed is None and parse_timestamp(value) is None
    assert message is not None and message.startswith("Must lie between")


def test_a_timestamp_with_an_offset_is_read_as_utc_and_a_malformed_one_says_so():
    assert read_timestamp("2024-01-15T11:00:00+01:00") == (
        datetime(2024, 1, 15, 10, tzinfo=UTC),
        None,
    )
    assert read_timestamp("2024-01-15T10:00:00")[1].startswith("Must be an RFC 3339")
    assert read_timestamp("\ud800")[1].startswith("Must be an RFC 3339")


@given(
    st.dictionaries(
        st.sampled_from(["from", "to", "period"]),
        st.one_of(hostile_text, st.datetimes(timezones=st.just(UTC)).map(format_timestamp)),
    )
)
def test_a_ranges_from_and_to_are_each_read_or_refused_with_the_reason_under_its_name(params):
    errors: dict[str, list[str]] = {"period": ["kept"]}
    start, end = read_range(params, errors)
    for name, value in (("from", start), ("to", end)):
        if params.get(name):
            parsed, message = read_timestamp(params[name])
            assert value == parsed and errors.get(name) == (None if message is None else [message])
        else:
            assert value is None and name not in errors
    assert errors["period"] == ["kept"]  # errors found before are left alone


def test_unstorable_text_is_found_with_its_path_in_values_and_keys():
    assert find_unstorable_text({"a": [1, {"b": "x\ud800"}]}) == "a.1.b"
    assert find_unstorable_text({"a": {"k\x00": 1}}) == "a"
    assert find_unstorable_text({"ok": ["text", "\u2028", "😀"]}) is None


def test_an_integer_beyond_any_float_is_a_field_error():
    r = Reader({"n": 10**400, "i": 2**40})
    assert r.number("n") is None and r.integer("i", maximum=2**31 - 1) is None
    assert set(r.errors) == {"n", "i"}


def test_a_reading_listing_more_units_than_allowed_is_refused_without_reading_them():
    units = [{"id": f"U{i}"} for i in range(MAX_UNITS_PER_READING + 1)]
    data = mutate(VALID["telemetry"], ("battery", "units"), units)
    with pytest.raises(SchemaError) as refused:
        TelemetryReading.from_dict(data, now=NOW)
    assert refused.value.errors == {"battery.units": [f"At most {MAX_UNITS_PER_READING} items."]}
