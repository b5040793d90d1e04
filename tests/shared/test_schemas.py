"""The shared wire schemas: what they accept, what they refuse and how they round-trip."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from shared.dispatch import ApplySchedule, DispatchCommand, SetBatteryPower
from shared.errors import SchemaError
from shared.events import Event, new_event
from shared.fields import split_batch
from shared.status import StatusReport
from shared.telemetry import TelemetryReading

READING = {
    "site_id": "SITE001",
    "timestamp": "2024-01-15T10:00:01Z",
    "message_id": "6f1c",
    "battery": {
        "soc_pct": 65,
        "power_kw": -25.0,
        "units": [{"id": "BAT1", "soc_pct": 64.8, "power_kw": -12.5}],
    },
    "grid": {"import_kw": 35, "export_kw": 0},
    "chargers": [{"id": "CHG1", "power_kw": 150.0, "status": "charging", "energy_kwh": 12.3}],
}


def test_the_contract_example_reading_parses_and_round_trips():
    reading = TelemetryReading.from_dict(READING)
    assert reading.timestamp == datetime(2024, 1, 15, 10, 0, 1, tzinfo=UTC)
    assert reading.battery.units[0].power_kw == -12.5
    again = TelemetryReading.from_dict(reading.to_dict())
    assert again == reading


def test_a_reading_with_an_offset_is_stored_in_utc():
    reading = TelemetryReading.from_dict({**READING, "timestamp": "2024-01-15T11:00:01+01:00"})
    assert reading.timestamp == datetime(2024, 1, 15, 10, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"battery": {"soc_pct": 101}}, "battery.soc_pct"),
        ({"battery": {"soc_pct": -1}}, "battery.soc_pct"),
        ({"battery": {"soc_pct": math.nan}}, "battery.soc_pct"),
        ({"grid": {"import_kw": math.inf}}, "grid.import_kw"),
        ({"grid": {"import_kw": "35"}}, "grid.import_kw"),
        ({"timestamp": "2024-01-15T10:00:01"}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"site_id": None}, "site_id"),
        ({"chargers": [{"id": "CHG1", "status": "flying"}]}, "chargers.0.status"),
        ({"battery": {"units": [{"soc_pct": 50}]}}, "battery.units.0.id"),
    ],
)
def test_an_unphysical_or_malformed_reading_names_the_field(patch, field):
    with pytest.raises(SchemaError) as caught:
        TelemetryReading.from_dict({**READING, **patch})
    assert field in caught.value.errors


def test_a_reading_far_in_the_future_is_refused_but_a_little_clock_skew_is_not():
    now = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
    skewed = {**READING, "timestamp": (now + timedelta(minutes=2)).isoformat()}
    assert TelemetryReading.from_dict(skewed, now=now)
    future = {**READING, "timestamp": (now + timedelta(hours=1)).isoformat()}
    with pytest.raises(SchemaError) as caught:
        TelemetryReading.from_dict(future, now=now)
    assert "timestamp" in caught.value.errors


def test_every_error_of_a_reading_is_reported_at_once():
    with pytest.raises(SchemaError) as caught:
        TelemetryReading.from_dict({"battery": {"soc_pct": 200}})
    assert {"site_id", "timestamp", "battery.soc_pct"} <= caught.value.errors.keys()


def test_a_batch_is_an_object_with_only_items():
    assert split_batch({"items": [1, 2]}) == ([1, 2], True)
    assert split_batch(READING) == ([READING], False)
    with pytest.raises(SchemaError):
        split_batch({"items": "nope"})


def test_a_status_report_keeps_the_applied_config_version():
    report = StatusReport.from_dict(
        {
            "site_id": "SITE001",
            "online": True,
            "config_version": 5,
            "firmware_version": "2.0.5",
            "mode": "auto",
        }
    )
    assert report.config_version == 5
    assert StatusReport.from_dict(report.to_dict()) == report
    with pytest.raises(SchemaError) as caught:
        StatusReport.from_dict({"site_id": "SITE001", "online": "yes", "mode": "party"})
    assert {"online", "mode"} <= caught.value.errors.keys()


def test_an_event_needs_its_id_kind_and_time():
    event = Event.from_dict(
        {
            "site_id": "SITE001",
            "event_id": "e1",
            "kind": "alarm",
            "timestamp": "2024-01-15T10:00:00Z",
            "severity": "critical",
            "data": {"bits": 3},
        }
    )
    assert Event.from_dict(event.to_dict()) == event
    with pytest.raises(SchemaError) as caught:
        Event.from_dict({"site_id": "SITE001", "kind": "party"})
    assert {"event_id", "timestamp", "kind"} <= caught.value.errors.keys()


def test_a_new_event_has_the_wire_shape_enexa_accepts_with_a_fresh_id():
    at = datetime(2026, 1, 15, 10, 0, 0, 250000, tzinfo=UTC)
    event = new_event("SITE001", "alarm", "Alarm raised", at, "warning", {"alarm_bits": 1})
    assert event == {
        "site_id": "SITE001",
        "event_id": event["event_id"],
        "timestamp": "2026-01-15T10:00:00.250000Z",
        "kind": "alarm",
        "severity": "warning",
        "message": "Alarm raised",
        "data": {"alarm_bits": 1},
    }
    assert Event.from_dict(event).to_dict() == event  # what Enexa's ingest parses it with
    assert new_event("SITE001", "alarm", "Alarm raised", at)["event_id"] != event["event_id"]
    with pytest.raises(SchemaError) as caught:  # one Enexa would refuse fails where it is made
        new_event("SITE001", "party", "Not a kind", at)
    assert caught.value.errors.keys() == {"kind"}


def test_the_seed_dispatch_example_parses():
    command = DispatchCommand.from_dict(
        {
            "site_id": "SITE001",
            "command": "set_battery_power",
            "params": {"power_kw": -25},
            "timestamp": "2024-01-15T10:00:00Z",
        }
    )
    assert command.params == SetBatteryPower(power_kw=-25.0)
    assert DispatchCommand.from_dict(command.to_dict()) == command


def test_a_dispatch_with_wrong_params_names_them():
    with pytest.raises(SchemaError) as caught:
        DispatchCommand.from_dict(
            {
                "site_id": "SITE001",
                "command": "set_charger_power_limit",
                "params": {"limit_kw": -5},
                "timestamp": "2024-01-15T10:00:00Z",
            }
        )
    assert {"params.charger_id", "params.limit_kw"} <= caught.value.errors.keys()


def test_an_unknown_command_is_refused():
    with pytest.raises(SchemaError) as caught:
        DispatchCommand.from_dict(
            {
                "site_id": "SITE001",
                "command": "self_destruct",
                "params": {},
                "timestamp": "2024-01-15T10:00:00Z",
            }
        )
    assert "command" in caught.value.errors


def test_a_schedule_is_sorted_and_overlapping_slots_are_refused():
    base = {"site_id": "SITE001", "command": "apply_schedule", "timestamp": "2024-01-15T10:00:00Z"}
    ok = DispatchCommand.from_dict(
        {
            **base,
            "params": {
                "slots": [
                    {
                        "start": "2024-01-15T11:00:00Z",
                        "end": "2024-01-15T12:00:00Z",
                        "power_kw": 50,
                    },
                    {
                        "start": "2024-01-15T10:00:00Z",
                        "end": "2024-01-15T11:00:00Z",
                        "power_kw": -50,
                    },
                ]
            },
        }
    )
    assert isinstance(ok.params, ApplySchedule)
    assert [s.power_kw for s in ok.params.slots] == [-50, 50]
    with pytest.raises(SchemaError) as caught:
        DispatchCommand.from_dict(
            {
                **base,
                "params": {
                    "slots": [
                        {
                            "start": "2024-01-15T10:00:00Z",
                            "end": "2024-01-15T11:30:00Z",
                            "power_kw": 1,
                        },
                        {
                            "start": "2024-01-15T11:00:00Z",
                            "end": "2024-01-15T12:00:00Z",
                            "power_kw": 2,
                        },
                    ]
                },
            }
        )
    assert "params.slots" in caught.value.errors
