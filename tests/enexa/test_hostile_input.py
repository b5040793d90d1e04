"""Hostile input on Enexa's wire: no request gets a 500, bad items are rejected with a reason
while the rest of a batch is kept, and nothing unbounded is written. Regression tests for
each bug found by probing, then property tests over every parser of the wire."""

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from enexa.api.parsers import MAX_JSON_DEPTH, nested_too_deeply
from enexa.api.throttling import reset_counters
from enexa.configs.models import ConfigVersion
from enexa.dispatch.models import Command
from enexa.provisioning.services import issue_api_key
from enexa.registry.models import Equipment, Site
from enexa.telemetry import services
from enexa.telemetry.models import BatteryUnitValue, ChargerValue, Event, TelemetryReading
from shared.fields import format_timestamp
from tests.factories import BatterySystemFactory, BatteryUnitFactory, ControllerFactory
from tests.hostile import (
    CALENDAR_EDGES,
    hostile_json,
    hostile_leaf,
    hostile_number,
    hostile_text,
    odd_text,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC)
REDIS_URL = "redis://127.0.0.1:6379/2"
SURROGATE = "\ud800"
# A reading's message_id, unique across every example hypothesis runs in one test database.
_ids = itertools.count()


@pytest.fixture
def client(staff_client):
    """The staff client, answering a server error as a 500 response instead of raising it;
    no site ratings cached by an earlier test (a site of the same code, other equipment)."""
    services.clear_caches()
    staff_client.raise_request_exception = False
    yield staff_client
    services.clear_caches()


def reading(message_id=None, ts=T0, **overrides):
    body = {
        "site_id": "SITE001",
        "timestamp": format_timestamp(ts),
        "message_id": message_id or f"m-{next(_ids)}",
        "battery": {"soc_pct": 65, "power_kw": -25.0, "units": [{"id": "BAT1", "power_kw": -25}]},
        "grid": {"import_kw": 35, "export_kw": 0},
        "chargers": [{"id": "CHG1", "power_kw": 150.0, "status": "charging"}],
    }
    body.update(overrides)
    return body


def event(event_id=None, **overrides):
    body = {
        "site_id": "SITE001",
        "event_id": event_id or f"e-{next(_ids)}",
        "timestamp": format_timestamp(T0),
        "kind": "alarm",
        "message": "door open",
    }
    body.update(overrides)
    return body


def post_raw(client, path, text: str, method="POST", **extra):
    """POST `text` as it is: json.dumps would escape a lone surrogate the same way, but this
    also sends what no serialiser would (NaN, depth)."""
    return client.generic(method, path, text.encode(), content_type="application/json", **extra)


def as_json(value) -> str:
    """JSON text with every non-ASCII character escaped, so a lone surrogate travels as
    `\\ud800` (the way a hostile client sends it)."""
    return json.dumps(value, ensure_ascii=True)


def assert_problem(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


# --- 1. lone surrogates -------------------------------------------------------------------------


def test_a_lone_surrogate_rejects_only_its_item_and_the_rest_of_the_batch_is_stored(client, site):
    items = [
        reading("good-1"),
        reading(f"bad{SURROGATE}"),
        reading(chargers=[{"id": f"C{SURROGATE}", "power_kw": 1}]),
        reading("good-2"),
    ]
    response = post_raw(client, "/v1/telemetry", as_json({"items": items}))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert "message_id" in body["errors"][0]["errors"]
    assert body["errors"][0]["message_id"] is None  # not echoed: it cannot be encoded
    assert "chargers.0.id" in body["errors"][1]["errors"]
    assert set(TelemetryReading.objects.values_list("message_id", flat=True)) == {
        "good-1",
        "good-2",
    }


def test_a_single_reading_with_a_lone_surrogate_is_a_400_problem(client, site):
    response = post_raw(client, "/v1/telemetry", as_json(reading(site_id=f"S{SURROGATE}")))
    body = assert_problem(response, 400)
    assert "site_id" in body["errors"][0]["errors"]
    assert not TelemetryReading.objects.exists()


def test_an_event_whose_data_holds_a_lone_surrogate_is_rejected_alone(client, site):
    items = [event("ok"), event("bad", data={"nested": [{"key": f"v{SURROGATE}"}]})]
    response = post_raw(client, "/v1/events", as_json({"items": items}))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert "data.nested.0.key" in body["errors"][0]["errors"]
    assert list(Event.objects.values_list("event_id", flat=True)) == ["ok"]


def test_a_nul_in_one_reading_of_a_batch_rejects_only_that_reading(client, site):
    items = [reading("good"), reading("bad\x00")]
    response = post_raw(client, "/v1/telemetry", as_json({"items": items}))
    assert response.status_code == 201, response.content
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        (
            "POST",
            "/v1/status",
            {"site_id": "SITE001", "online": True, "controller_id": SURROGATE},
            "controller_id",
        ),
        (
            "POST",
            "/v1/sites/SITE001/commands",
            {
                "command": "set_charger_power_limit",
                "params": {"charger_id": SURROGATE, "limit_kw": 9},
            },
            "params.charger_id",
        ),
        (
            "POST",
            "/v1/sites/SITE001/commands",
            {"command": "set_mode", "params": {"mode": "safe"}, "command_id": SURROGATE},
            "command_id",
        ),
        ("PATCH", "/v1/config/SITE001", {"modbus": {"host": f"h{SURROGATE}"}}, "modbus.host"),
        ("POST", "/v1/sites", {"id": "SITE009", "name": SURROGATE, "timezone": "UTC"}, "name"),
    ],
)
def test_a_lone_surrogate_in_any_other_write_is_a_400_naming_the_field(
    client, site, method, path, body, field
):
    response = post_raw(client, path, as_json(body), method=method, HTTP_IF_MATCH="*")
    assert field in assert_problem(response, 400)["errors"]
    assert not Command.objects.exists()
    assert not Site.objects.filter(code="SITE009").exists()


# --- 2. nesting depth ---------------------------------------------------------------------------


def deep_body(nul: bool) -> str:
    """An object holding arrays nested 1,000 deep (and, with `nul`, a NUL escape)."""
    return '{"deep": ' + "[" * 1000 + "]" * 1000 + (', "n": "\\u0000"}' if nul else "}")


@pytest.mark.parametrize(
    "path",
    ["/v1/telemetry", "/v1/status", "/v1/events", "/v1/sites", "/v1/sites/SITE001/commands"],
)
@pytest.mark.parametrize("nul", [False, True], ids=["plain", "with-nul"])
def test_json_nested_a_thousand_levels_deep_is_a_400_problem_not_a_500(client, site, path, nul):
    body = assert_problem(post_raw(client, path, deep_body(nul)), 400)
    assert "nested too deeply" in body["detail"]


@pytest.mark.parametrize("nul", [False, True], ids=["plain", "with-nul"])
def test_deep_json_from_an_anonymous_caller_is_never_a_500(anon_client, site, nul):
    anon_client.raise_request_exception = False
    response = post_raw(anon_client, "/v1/telemetry", deep_body(nul))
    assert response.status_code in (400, 401)
    assert response["Content-Type"] == "application/problem+json"


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


# Strings full of brackets, quotes and backslashes, which must not count as nesting.
bracket_text = st.text(alphabet='[]{}"\\ab', max_size=12)
bracketed_json = st.recursive(
    st.none() | st.integers() | bracket_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(bracket_text, children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(bracketed_json, st.integers(0, 40))
def test_the_depth_bound_measures_json_text_as_the_parser_nests_it(value, wrap):
    value = nested(value, wrap)
    assert nested_too_deeply(as_json(value).encode()) == (depth(value) > MAX_JSON_DEPTH)


def test_an_unclosed_run_of_brackets_counts_as_too_deep():
    assert nested_too_deeply(b"[" * 1000)
    assert nested_too_deeply(b'{"a": ' + b"[" * 40 + b"1")


def test_json_nested_within_the_bound_is_parsed(client, site):
    data = {"nested": {"a": [[[[{"b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]]]]}}
    response = post_raw(client, "/v1/events", as_json(event(data=data)))
    assert response.status_code == 201, response.content


# --- 3. timestamps at the calendar's limits -----------------------------------------------------


@pytest.mark.parametrize("stamp", CALENDAR_EDGES)
def test_a_timestamp_at_the_calendars_limits_is_a_field_error_in_every_ingest(client, site, stamp):
    for path, body in [
        ("/v1/telemetry", reading(timestamp=stamp)),
        ("/v1/events", event(timestamp=stamp)),
        ("/v1/status", {"site_id": "SITE001", "online": True, "timestamp": stamp}),
    ]:
        problem = assert_problem(client.post(path, body, format="json"), 400)
        errors = problem["errors"][0]["errors"] if "accepted" in problem else problem["errors"]
        assert "timestamp" in errors, (path, problem)


@pytest.mark.parametrize("stamp", CALENDAR_EDGES)
def test_a_read_back_range_at_the_calendars_limits_is_a_field_error(client, site, stamp):
    for name in ("from", "to"):
        response = client.get("/v1/sites/SITE001/telemetry", {name: stamp})
        assert name in assert_problem(response, 400)["errors"]


@pytest.mark.parametrize("stamp", CALENDAR_EDGES)
def test_a_command_with_a_time_at_the_calendars_limits_is_a_field_error(client, site, stamp):
    far = {"start": stamp, "end": "2024-01-15T11:00:00Z", "power_kw": 10}
    for body, field in [
        ({"command": "apply_schedule", "params": {"slots": [far]}}, "params.slots.0.start"),
        ({"command": "set_mode", "params": {"mode": "safe"}, "valid_until": stamp}, "valid_until"),
    ]:
        response = client.post("/v1/sites/SITE001/commands", body, format="json")
        assert field in assert_problem(response, 400)["errors"]
    assert not Command.objects.exists()


# --- 4. readings of assets the registry does not rate, and how many a reading lists ---------------


def test_a_charger_the_registry_does_not_list_is_bounded_by_what_the_site_can_carry(client, site):
    """Site grid 400 kW, no battery: a charger without a rating may show up to 3 x 400 kW."""
    ok = reading(chargers=[{"id": "NEW1", "power_kw": 350}])
    absurd = reading(chargers=[{"id": "NEW2", "power_kw": 5000}])
    body = client.post("/v1/telemetry", {"items": [ok, absurd]}, format="json").json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert "chargers.0.power_kw" in body["errors"][0]["errors"]
    assert TelemetryReading.objects.get().chargers_power_kw == 350


def test_chargers_that_together_exceed_what_the_site_can_carry_are_rejected(client, site):
    many = [{"id": f"NEW{i}", "power_kw": 1000} for i in range(5)]
    body = client.post("/v1/telemetry", reading(chargers=many), format="json").json()
    assert "chargers" in body["errors"][0]["errors"]
    assert not TelemetryReading.objects.exists()


def test_a_battery_unit_the_registry_does_not_list_is_bounded_by_the_battery(client, site):
    system = BatterySystemFactory(site=site, code="BESS1")  # 220 kW
    BatteryUnitFactory(site=site, code="BAT1", parent=system)
    battery = {"power_kw": 0, "units": [{"id": "BAT9", "power_kw": 5000}]}
    body = client.post("/v1/telemetry", reading(battery=battery), format="json").json()
    assert "battery.units.0.power_kw" in body["errors"][0]["errors"]
    assert not BatteryUnitValue.objects.exists()


@pytest.mark.parametrize("part", ["units", "chargers"])
def test_a_reading_listing_thousands_of_units_or_chargers_is_rejected_before_writing(
    client, site, part
):
    listed = [{"id": f"X{i}", "power_kw": 0} for i in range(20_000)]
    body = reading(battery={"units": listed}) if part == "units" else reading(chargers=listed)
    answer = client.post("/v1/telemetry", body, format="json").json()
    field = "battery.units" if part == "units" else "chargers"
    assert answer["errors"][0]["errors"][field] == ["At most 64 items."]
    assert not BatteryUnitValue.objects.exists() and not ChargerValue.objects.exists()


def test_an_integer_beyond_any_float_or_column_is_a_field_error_not_a_500(client, site):
    huge = reading(battery={"soc_pct": 10**400})
    body = client.post("/v1/telemetry", huge, format="json").json()
    assert "battery.soc_pct" in body["errors"][0]["errors"]
    status = {"site_id": "SITE001", "online": True, "buffer_depth": 2**40}
    response = client.post("/v1/status", status, format="json")
    assert "buffer_depth" in assert_problem(response, 400)["errors"]


# --- 5. physical ranges of the registry and the configuration -----------------------------------


def test_a_site_grid_limit_of_1e308_kw_is_a_field_error(client, site):
    new = {"id": "SITE009", "name": "Huge", "timezone": "UTC", "grid_connection_limit_kw": 1e308}
    assert (
        "grid_connection_limit_kw"
        in assert_problem(client.post("/v1/sites", new, format="json"), 400)["errors"]
    )
    change = client.patch("/v1/sites/SITE001", {"grid_connection_limit_kw": 20_000}, format="json")
    assert "grid_connection_limit_kw" in assert_problem(change, 400)["errors"]
    assert Site.objects.get(code="SITE001").grid_connection_limit_kw == 400


@pytest.mark.parametrize(
    ("kind", "specs"),
    [
        ("charger", {"max_power_kw": 1e308}),
        ("battery_system", {"max_charge_kw": 50_000}),
        ("battery_system", {"capacity_kwh": 1e12}),
        ("charger", {"connector_count": 30_000}),
    ],
)
def test_equipment_specs_beyond_physical_ranges_are_field_errors(client, site, kind, specs):
    new = {"id": "EQ9", "site_id": "SITE001", "kind": kind, "specs": specs}
    errors = assert_problem(client.post("/v1/equipment", new, format="json"), 400)["errors"]
    assert f"specs.{next(iter(specs))}" in errors
    assert not Equipment.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"battery": {"max_charge_kw": 50_000}}, "battery.max_charge_kw"),
        ({"grid": {"limit_kw": 1e308}}, "grid.limit_kw"),
        ({"battery": {"max_discharge_kw": 10_001}}, "battery.max_discharge_kw"),
    ],
)
def test_configuration_values_beyond_physical_ranges_are_field_errors(client, site, change, field):
    ControllerFactory(site=site, code="CTRL001")
    response = client.patch("/v1/config/SITE001", change, format="json", HTTP_IF_MATCH="*")
    assert field in assert_problem(response, 400)["errors"]


# --- 6, 7. body size, problem titles ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/telemetry", "/v1/sites", "/v1/no-such-path"])
def test_a_body_above_the_limit_is_a_413_problem_on_any_api_path(client, anon_client, path):
    anon_client.raise_request_exception = False
    big = "[" + " " * (10 * 1024 * 1024) + "]"
    for caller in (client, anon_client):
        body = assert_problem(post_raw(caller, path, big), 413)
        assert body["title"] == "Request body too large"


def test_problem_titles_name_the_status_not_a_template(client):
    unsupported = client.generic("POST", "/v1/telemetry", b"x", content_type="text/plain")
    assert assert_problem(unsupported, 415)["title"] == "Unsupported Media Type"
    not_allowed = client.put("/v1/telemetry", {}, format="json")
    assert assert_problem(not_allowed, 405)["title"] == "Method Not Allowed"


def test_nan_or_infinity_in_a_body_is_a_400_problem(client, site):
    text = as_json(reading()).replace('"soc_pct": 65', '"soc_pct": NaN')
    assert_problem(post_raw(client, "/v1/telemetry", text), 400)
    assert not TelemetryReading.objects.exists()


# --- 8. failed authentication -------------------------------------------------------------------


@pytest.fixture(params=["", REDIS_URL], ids=["in-process", "redis"])
def auth_failure_limit_3(request):
    """At most 3 failed authentications per minute and address, counted in this process or
    in Redis (db 2)."""
    with override_settings(
        REDIS_URL=request.param,
        ENEXA_RATE_LIMIT_PREFIX=f"test:{uuid.uuid4().hex}",
        ENEXA_RATE_LIMITS={"auth_failure": "3/min"},
    ):
        try:
            yield
        finally:
            reset_counters()


def get_sites(token, address="10.0.0.1"):
    client = APIClient()
    return client.get("/v1/sites", HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=address)


def test_bogus_keys_from_one_address_get_429_after_the_limit(site, auth_failure_limit_3):
    statuses = [get_sites(f"enx_{i}.bogus").status_code for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    refused = get_sites("enx_x.bogus")
    assert assert_problem(refused, 429)["detail"].startswith("Too many failed authentication")
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_bogus_jwts_count_against_the_same_limit(site, auth_failure_limit_3):
    statuses = [get_sites(token).status_code for token in ["a.b.c", "enx_1.x", "junk", "x"]]
    assert statuses == [401, 401, 401, 429]


def test_over_the_limit_even_a_valid_key_is_refused_so_guessing_learns_nothing(
    site, auth_failure_limit_3
):
    _, key = issue_api_key(ControllerFactory(site=site))
    assert get_sites(key).status_code == 200
    for _ in range(3):
        get_sites("enx_1.bogus")
    assert get_sites(key).status_code == 429
    assert get_sites(key, address="10.0.0.2").status_code == 200  # another address is not held


# --- property tests over every parser of the wire -----------------------------------------------

# Places in a valid reading where a hostile value goes.
READING_PATHS = [
    ("site_id",),
    ("timestamp",),
    ("message_id",),
    ("backfilled",),
    ("battery",),
    ("battery", "soc_pct"),
    ("battery", "power_kw"),
    ("battery", "units"),
    ("battery", "units", 0, "id"),
    ("battery", "units", 0, "power_kw"),
    ("battery", "units", 0, "temperature_c"),
    ("grid", "import_kw"),
    ("grid", "frequency_hz"),
    ("grid", "import_energy_kwh"),
    ("chargers",),
    ("chargers", 0, "id"),
    ("chargers", 0, "power_kw"),
    ("chargers", 0, "status"),
    ("chargers", 0, "energy_kwh"),
    ("extra",),
]
EVENT_PATHS = [("site_id",), ("event_id",), ("timestamp",), ("kind",), ("severity",), ("message",)]
EVENT_PATHS += [("data",), ("data", "x"), ("data", "x", "y")]


def put(document: dict, path: tuple, value) -> dict:
    """A copy of `document` with `value` at `path` (objects made on the way where missing)."""
    out = json.loads(json.dumps(document))
    node = out
    for step in path[:-1]:
        child = node[step] if isinstance(node, list) else node.get(step)
        if not isinstance(child, dict | list):
            child = node[step] = {}
        node = child
    node[path[-1]] = value
    return out


def nested(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


# What replaces a value: odd text and numbers often, any JSON, or a value nested near the bound.
hostile_value = st.one_of(
    odd_text,
    hostile_number,
    hostile_json,
    st.builds(nested, hostile_leaf, st.integers(20, 60)),
)
mutation = st.tuples(st.sampled_from(READING_PATHS), hostile_value)
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def counts():
    return (
        TelemetryReading.objects.count(),
        BatteryUnitValue.objects.count(),
        ChargerValue.objects.count(),
    )


def assert_batch_answer(response, n_items: int, good: list[int], written: int):
    """No 500; an envelope error stores nothing; else each item is counted once, the good
    ones are stored, each rejection has reasons, and exactly the accepted items were written."""
    assert response.status_code in (200, 201, 400), response.content
    body = response.json()
    if "accepted" not in body:
        assert response.status_code == 400 and written == 0
        return
    assert body["accepted"] + body["duplicate"] + body["rejected"] == n_items
    rejected = {e["index"] for e in body["errors"]}
    assert all(e["errors"] for e in body["errors"])
    assert not rejected & set(good), body
    assert written == body["accepted"]


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(st.none(), mutation), min_size=1, max_size=6))
def test_any_telemetry_batch_keeps_its_good_readings_and_rejects_the_rest_with_reasons(
    client, site, plan
):
    items, good = [], []
    for index, change in enumerate(plan):
        item = reading(ts=T0 + timedelta(seconds=next(_ids)))
        if change is None:
            good.append(index)
        else:
            item = put(item, *change)
        items.append(item)
    before = counts()
    response = post_raw(client, "/v1/telemetry", as_json({"items": items}))
    after = counts()
    assert_batch_answer(response, len(items), good, after[0] - before[0])
    # Rows of units and chargers are bounded by the accepted readings, however many were listed.
    assert after[1] - before[1] <= 64 * (after[0] - before[0])
    assert after[2] - before[2] <= 64 * (after[0] - before[0])


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.one_of(st.none(), st.tuples(st.sampled_from(EVENT_PATHS), hostile_value)),
        min_size=1,
        max_size=6,
    )
)
def test_any_event_batch_keeps_its_good_events_and_rejects_the_rest_with_reasons(
    client, site, plan
):
    items, good = [], []
    for index, change in enumerate(plan):
        if change is None:
            good.append(index)
            items.append(event())
        else:
            items.append(put(event(), *change))
    before = Event.objects.count()
    response = post_raw(client, "/v1/events", as_json({"items": items}))
    assert_batch_answer(response, len(items), good, Event.objects.count() - before)


@PROPERTY_SETTINGS
@given(hostile_json)
def test_any_body_on_any_ingest_endpoint_is_answered_without_a_500(client, site, body):
    for path in ("/v1/telemetry", "/v1/events", "/v1/status"):
        response = post_raw(client, path, as_json(body))
        assert response.status_code in (200, 201, 400, 404), (path, response.content)
        assert response.status_code != 500


@PROPERTY_SETTINGS
@given(
    st.sampled_from(["site_id", "online", "timestamp", "controller_id", "config_version"])
    | st.sampled_from(["firmware_version", "mode", "modbus_link_up", "buffer_depth"]),
    hostile_json,
)
def test_any_status_report_is_applied_or_refused_with_a_field_error(client, site, field, value):
    response = post_raw(
        client, "/v1/status", as_json({"site_id": "SITE001", "online": True, field: value})
    )
    assert response.status_code in (200, 400, 404), response.content
    if response.status_code == 400:
        assert response.json().get("errors") or "detail" in response.json()


@PROPERTY_SETTINGS
@given(
    st.sampled_from(["set_battery_power", "set_charger_power_limit", "set_grid_limit"])
    | st.sampled_from(["set_mode", "apply_schedule"])
    | hostile_text,
    hostile_json,
    st.one_of(st.none(), hostile_text),
    st.one_of(st.none(), hostile_text),
)
def test_any_command_is_stored_once_or_refused_without_a_500(
    client, site, command, params, valid_until, command_id
):
    body = {"command": command, "params": params}
    if valid_until is not None:
        body["valid_until"] = valid_until
    if command_id is not None:
        body["command_id"] = command_id
    before = Command.objects.count()
    response = post_raw(client, "/v1/sites/SITE001/commands", as_json(body))
    assert response.status_code in (200, 202, 400, 422), response.content
    stored = Command.objects.count() - before
    assert stored == (1 if response.status_code == 202 else 0)


@PROPERTY_SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["battery", "grid", "tariff", "telemetry", "modbus", "autonomy"])
        | hostile_text,
        hostile_json,
        max_size=3,
    )
)
def test_any_configuration_document_is_applied_or_refused_without_a_500(client, site, document):
    if not site.controllers.exists():  # one controller, made in the first example
        ControllerFactory(site=site, code="CTRL001")
    for method in ("PATCH", "PUT"):
        versions = ConfigVersion.objects.count()
        response = post_raw(
            client, "/v1/config/SITE001", as_json(document), method=method, HTTP_IF_MATCH="*"
        )
        assert response.status_code in (200, 400), response.content
        if response.status_code == 400:
            assert ConfigVersion.objects.count() == versions


@PROPERTY_SETTINGS
@given(
    st.sampled_from(["grid_connection_limit_kw", "latitude", "name", "timezone", "id"]),
    hostile_json,
)
def test_any_site_registration_is_stored_or_refused_without_a_500(client, site, field, value):
    body = {"id": f"S{next(_ids)}", "name": "x", "grid_connection_limit_kw": 100, field: value}
    response = post_raw(client, "/v1/sites", as_json(body))
    assert response.status_code in (201, 400), response.content
    if response.status_code == 201:
        assert 0 < Site.objects.get(code=response.json()["id"]).grid_connection_limit_kw <= 10_000
