"""The published OpenAPI schemas of the wire formats agree with the readers they come from:
what a reader accepts the schema accepts, and a field a reader refuses the schema refuses."""

import copy

import pytest
from jsonschema import Draft4Validator

from shared.dispatch import COMMANDS, DispatchCommand
from shared.errors import SchemaError
from shared.events import EVENT_KINDS, Event
from shared.openapi import add_components, components
from shared.status import StatusReport
from shared.telemetry import TelemetryReading
from tests.shared.test_schemas import READING

EVENT = {
    "site_id": "SITE001",
    "event_id": "e-1",
    "timestamp": "2024-01-15T10:00:01Z",
    "kind": "alarm",
    "severity": "critical",
    "message": "Battery over temperature",
    "data": {"bit": 3},
}
STATUS = {
    "site_id": "SITE001",
    "online": True,
    "timestamp": "2024-01-15T10:00:01Z",
    "config_version": 5,
    "mode": "autonomous",
    "modbus_link_up": False,
    "buffer_depth": 12,
}
COMMAND = {
    "site_id": "SITE001",
    "command": "set_battery_power",
    "params": {"power_kw": -25},
    "timestamp": "2024-01-15T10:00:00Z",
    "valid_until": "2024-01-15T10:05:00Z",
}
FORMATS = {
    "TelemetryReading": (TelemetryReading.from_dict, READING),
    "Event": (Event.from_dict, EVENT),
    "StatusReport": (StatusReport.from_dict, STATUS),
    "DispatchCommand": (DispatchCommand.from_dict, COMMAND),
}


def as_json_schema(schema):
    """OpenAPI 3.0's `nullable` as JSON Schema's null type, for a standard validator."""
    if isinstance(schema, list):
        return [as_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: as_json_schema(value) for key, value in schema.items()}
    if out.pop("nullable", False):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def schema_accepts(name: str, document) -> bool:
    # The components sit beside the $ref so that `#/components/...` resolves in one document.
    schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": components()}}
    return Draft4Validator(as_json_schema(schema)).is_valid(document)


def reader_accepts(name: str, document) -> bool:
    from_dict = FORMATS[name][0]
    try:
        from_dict(document)
    except SchemaError:
        return False
    return True


def changed(document: dict, path: str, value) -> dict:
    out = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = out
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return out


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_the_example_of_each_wire_format_fits_its_published_schema(name):
    assert reader_accepts(name, FORMATS[name][1])
    assert schema_accepts(name, FORMATS[name][1])


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("TelemetryReading", "site_id", ...),
        ("TelemetryReading", "site_id", "S" * 33),
        ("TelemetryReading", "timestamp", ...),
        ("TelemetryReading", "battery.soc_pct", 101),
        ("TelemetryReading", "battery.units.0.id", ...),
        ("TelemetryReading", "grid.frequency_hz", 39),
        ("TelemetryReading", "chargers.0.status", "exploded"),
        ("TelemetryReading", "chargers.0.power_kw", "fast"),
        ("TelemetryReading", "backfilled", "yes"),
        ("Event", "kind", "gossip"),
        ("Event", "severity", "mild"),
        ("Event", "event_id", "e" * 65),
        ("Event", "data", [1]),
        ("StatusReport", "online", ...),
        ("StatusReport", "config_version", -1),
        ("StatusReport", "mode", "sleepy"),
        ("DispatchCommand", "command", "self_destruct"),
        ("DispatchCommand", "params", ...),
        ("DispatchCommand", "params.power_kw", ...),
        ("DispatchCommand", "params.unit_id", "U" * 33),
    ],
)
def test_a_field_the_reader_refuses_the_published_schema_refuses_too(name, path, value):
    document = changed(FORMATS[name][1], path, value)
    assert not reader_accepts(name, document)
    assert not schema_accepts(name, document)


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("TelemetryReading", "message_id", None),
        ("TelemetryReading", "battery", None),
        ("TelemetryReading", "chargers", None),
        ("Event", "severity", ...),
        ("StatusReport", "mode", None),
        ("DispatchCommand", "valid_until", ...),
    ],
)
def test_an_optional_field_left_out_or_null_is_fine_for_both(name, path, value):
    document = changed(FORMATS[name][1], path, value)
    assert reader_accepts(name, document)
    assert schema_accepts(name, document)


def test_each_dispatch_command_fixes_the_shape_of_its_params():
    variants = components()["DispatchCommand"]["oneOf"]
    assert [v["properties"]["command"]["enum"] for v in variants] == [[c] for c in COMMANDS]
    mode = {**COMMAND, "command": "set_mode", "params": {"mode": "safe"}}
    assert schema_accepts("DispatchCommand", mode)
    assert not schema_accepts("DispatchCommand", {**mode, "params": {"power_kw": 5}})


def test_a_batch_is_a_list_of_items_and_nothing_else():
    batch = {"items": [EVENT, {**EVENT, "event_id": "e-2"}]}
    assert schema_accepts("EventBatch", batch)
    assert not schema_accepts("EventBatch", {**batch, "site_id": "SITE001"})
    assert not schema_accepts("EventBatch", {"items": [{**EVENT, "kind": "gossip"}]})


def test_the_event_kinds_published_are_the_ones_read():
    assert components()["Event"]["properties"]["kind"]["enum"] == list(EVENT_KINDS)


def test_the_hook_adds_only_the_formats_a_schema_uses_and_what_they_refer_to():
    result = {"paths": {"/v1/events": {"$ref": "#/components/schemas/EventBatch"}}}
    schemas = add_components(result)["components"]["schemas"]
    assert sorted(schemas) == ["Event", "EventBatch"]
