"""Every value the shared reading schema carries is stored and read back: the reading posted is
built by walking the schema's dataclasses, so a field added there without storage fails here."""

import dataclasses
import itertools
import typing
from datetime import UTC, datetime

import pytest

import shared.telemetry as schema
from enexa.telemetry.models import TelemetryReading
from shared.fields import format_timestamp

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
# Fields whose value is fixed by the test rather than generated: the reading's identity.
IDENTITY = {"site_id", "timestamp", "message_id"}


def _inner(hint):
    """`X | None` -> X; `tuple[X, ...]` -> X (with a flag saying it was a tuple)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return args[0], True
    if args and typing.get_origin(hint) is not None:
        return args[0], False
    return hint, False


def every_field(cls, numbers, path=""):
    """A wire dict of `cls` with every field set to a distinct valid value, and the dotted
    paths of its leaves. Numbers come from 41, 41.5, ...: inside every bound of the schema
    (SOC, frequency, temperature) and below the test site's ratings."""
    body, leaves = {}, []
    for f in dataclasses.fields(cls):
        if f.name in IDENTITY:
            continue
        hint, many = _inner(typing.get_type_hints(cls)[f.name])
        name = f"{path}{f.name}"
        if dataclasses.is_dataclass(hint):
            value, inner = every_field(hint, numbers, f"{name}.0." if many else f"{name}.")
            leaves += inner
            body[f.name] = [value] if many else value
            continue
        if f.name == "id":
            value = {schema.BatteryUnitReading: "BAT1", schema.ChargerReading: "CHG1"}[cls]
        elif f.name == "status":
            value = "charging"
        elif hint is bool:
            value = True
        elif hint is float:
            value = next(numbers)
        else:
            raise AssertionError(f"{name}: no test value for {hint}; extend every_field")
        body[f.name] = value
        leaves.append(name)
    return body, leaves


def full_reading() -> tuple[dict, list[str]]:
    body, leaves = every_field(schema.TelemetryReading, itertools.count(41.0, 0.5))
    body.update(site_id="SITE001", timestamp=format_timestamp(T0), message_id="every-field-1")
    return body, leaves


def _leaf(body, path):
    for part in path.split("."):
        body = body[int(part)] if part.isdigit() else body[part]
    return body


@pytest.mark.django_db
def test_a_reading_with_every_schema_field_reads_back_value_for_value(equipped_site, staff_client):
    body, leaves = full_reading()
    assert "grid.voltage_v" in leaves and "chargers.0.energy_kwh" in leaves  # the walk is deep
    # The schema itself accepts what was built, with nothing left out.
    assert schema.TelemetryReading.from_dict(body, now=T0).to_dict() == body
    response = staff_client.post("/v1/telemetry", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["accepted"] == 1
    back = staff_client.get(
        "/v1/sites/SITE001/telemetry?resolution=raw"
        "&from=2024-03-01T11:00:00Z&to=2024-03-01T13:00:00Z"
    )
    assert back.status_code == 200, back.json()
    (point,) = back.json()["points"]
    for leaf in leaves:
        assert _leaf(point, leaf) == _leaf(body, leaf), leaf
    point.pop("received_at")
    assert point == body


@pytest.mark.django_db
def test_the_grid_counters_voltage_and_frequency_are_columns_of_the_stored_reading(
    equipped_site, staff_client
):
    body, _ = full_reading()
    staff_client.post("/v1/telemetry", body, format="json")
    row = TelemetryReading.objects.get(message_id="every-field-1")
    grid = body["grid"]
    assert (row.grid_voltage_v, row.grid_frequency_hz) == (grid["voltage_v"], grid["frequency_hz"])
    assert row.grid_import_energy_kwh == grid["import_energy_kwh"]
    assert row.grid_export_energy_kwh == grid["export_energy_kwh"]


@pytest.mark.django_db
def test_a_negative_energy_counter_is_refused_with_a_field_error(equipped_site, staff_client):
    body, _ = full_reading()
    body["grid"]["import_energy_kwh"] = -1
    response = staff_client.post("/v1/telemetry", body, format="json")
    assert response.status_code == 400
    assert "grid.import_energy_kwh" in response.json()["errors"][0]["errors"]
