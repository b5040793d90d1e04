"""Telemetry ingest: each reading stored exactly once, partial batches, every validation rule,
and readings refused for sites the caller may not post for."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from enexa.configs.models import ConfigState
from enexa.configs.services import ensure_initial_version
from enexa.telemetry import services
from enexa.telemetry.models import BatteryUnitValue, ChargerValue, Event, TelemetryReading
from enexa.telemetry.views import poster_for
from shared.fields import format_timestamp
from tests.conftest import controller_client, jwt_client
from tests.factories import (
    ControllerFactory,
    MembershipFactory,
    UserFactory,
)

T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC)


def reading(ts=T0, message_id=None, site_id="SITE001", **overrides):
    body = {
        "site_id": site_id,
        "timestamp": format_timestamp(ts),
        "battery": {
            "soc_pct": 65,
            "power_kw": -25.0,
            "units": [
                {"id": "BAT1", "soc_pct": 64.8, "power_kw": -12.5},
                {"id": "BAT2", "soc_pct": 65.2, "power_kw": -12.5},
            ],
        },
        "grid": {"import_kw": 35, "export_kw": 0},
        "chargers": [{"id": "CHG1", "power_kw": 150.0, "status": "charging", "energy_kwh": 12.3}],
    }
    if message_id:
        body["message_id"] = message_id
    body.update(overrides)
    return body


def post(client, body):
    return client.post("/v1/telemetry", body, format="json")


@pytest.mark.django_db
def test_a_reading_in_the_contract_shape_is_stored_with_queryable_columns(
    staff_client, equipped_site
):
    response = post(staff_client, reading(message_id="m-1"))
    assert response.status_code == 201, response.json()
    assert response.json() == {"accepted": 1, "duplicate": 0, "rejected": 0, "errors": []}
    stored = TelemetryReading.objects.get()
    assert (stored.timestamp, stored.message_id) == (T0, "m-1")
    assert (stored.battery_soc_pct, stored.battery_power_kw) == (65, -25)
    assert (stored.grid_import_kw, stored.grid_export_kw, stored.chargers_power_kw) == (35, 0, 150)
    units = BatteryUnitValue.objects.filter(reading=stored).order_by("unit_code")
    assert [(u.unit_code, u.soc_pct, u.power_kw) for u in units] == [
        ("BAT1", 64.8, -12.5),
        ("BAT2", 65.2, -12.5),
    ]
    charger = ChargerValue.objects.get(reading=stored)
    assert (charger.charger_code, charger.status, charger.energy_kwh) == ("CHG1", "charging", 12.3)


@pytest.mark.django_db
def test_the_same_message_id_twice_is_stored_once_and_counted_as_a_duplicate(
    staff_client, equipped_site
):
    assert post(staff_client, reading(message_id="m-1")).status_code == 201
    again = post(staff_client, reading(T0 + timedelta(seconds=5), message_id="m-1"))
    assert again.status_code == 200
    assert again.json() == {"accepted": 0, "duplicate": 1, "rejected": 0, "errors": []}
    assert TelemetryReading.objects.count() == 1
    assert BatteryUnitValue.objects.count() == 2


@pytest.mark.django_db
def test_without_message_id_the_site_and_timestamp_identify_a_reading(staff_client, equipped_site):
    post(staff_client, reading())
    again = post(staff_client, reading())
    assert again.json()["duplicate"] == 1
    # A reading with an id at the same moment is a different reading.
    assert post(staff_client, reading(message_id="m-9")).json()["accepted"] == 1
    assert TelemetryReading.objects.count() == 2


@pytest.mark.django_db
def test_a_partial_batch_stores_the_valid_readings_and_lists_each_rejected_one(
    staff_client, equipped_site
):
    post(staff_client, reading(message_id="old"))
    items = [
        reading(T0 + timedelta(seconds=5), message_id="a"),
        reading(T0 + timedelta(seconds=10), message_id="b", battery={"soc_pct": 140}),
        reading(message_id="old"),
        reading(T0 + timedelta(seconds=15), message_id="c"),
        {"site_id": "SITE001", "message_id": "d"},
        reading(T0 + timedelta(seconds=5), message_id="a"),  # repeated inside the batch
    ]
    response = post(staff_client, {"items": items})
    assert response.status_code == 201
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 2, 2)
    assert body["errors"] == [
        {"index": 1, "message_id": "b", "errors": {"battery.soc_pct": ["Must be at most 100."]}},
        {"index": 4, "message_id": "d", "errors": {"timestamp": ["This field is required."]}},
    ]
    assert set(TelemetryReading.objects.values_list("message_id", flat=True)) == {
        "old",
        "a",
        "c",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"battery": {"soc_pct": -1}}, "battery.soc_pct", "Must be at least 0."),
        ({"battery": {"soc_pct": 100.5}}, "battery.soc_pct", "Must be at most 100."),
        (
            {"battery": {"units": [{"id": "BAT1", "soc_pct": 101}]}},
            "battery.units.0.soc_pct",
            "Must be at most 100.",
        ),
        ({"grid": {"import_kw": float("nan")}}, "grid.import_kw", "Must be a finite number"),
        ({"grid": {"import_kw": float("inf")}}, "grid.import_kw", "Must be a finite number"),
        ({"timestamp": "2024-01-15T10:00:01"}, "timestamp", "RFC 3339"),
        ({"grid": {"import_kw": 1250}}, "grid.import_kw", "3 x the rating (400 kW)"),
        ({"battery": {"power_kw": -700}}, "battery.power_kw", "3 x the rating (220 kW)"),
        (
            {"battery": {"units": [{"id": "BAT2", "power_kw": 400}]}},
            "battery.units.0.power_kw",
            "3 x the rating (110 kW)",
        ),
        (
            {"chargers": [{"id": "CHG1", "power_kw": 950}]},
            "chargers.0.power_kw",
            "3 x the rating (300 kW)",
        ),
        (
            {"chargers": [{"id": "CHG1", "status": "exploding"}]},
            "chargers.0.status",
            "Must be one of",
        ),
        ({"site_id": None}, "site_id", "This field is required."),
    ],
)
def test_each_validation_rule_rejects_the_reading_with_a_field_error(
    staff, equipped_site, change, field, message
):
    result = services.ingest_readings(poster_for(staff), reading(message_id="x", **change))
    assert (result.accepted, result.rejected) == (0, 1)
    errors = result.errors[0]["errors"]
    assert any(message in m for m in errors[field]), errors
    assert TelemetryReading.objects.count() == 0


@pytest.mark.django_db
def test_nan_in_the_json_text_is_refused_with_a_problem_response(staff_client, equipped_site):
    raw = json.dumps(reading(grid={"import_kw": float("nan")}), allow_nan=True)
    response = staff_client.post("/v1/telemetry", raw, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert TelemetryReading.objects.count() == 0


@pytest.mark.django_db
def test_a_single_rejected_reading_answers_400_with_the_counts_and_problem_fields(
    staff_client, equipped_site
):
    response = post(staff_client, reading(message_id="bad", battery={"soc_pct": 101}))
    assert response.status_code == 400
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (0, 0, 1)
    assert body["errors"] == [
        {"index": 0, "message_id": "bad", "errors": {"battery.soc_pct": ["Must be at most 100."]}}
    ]
    assert body["type"].endswith("/invalid") and body["status"] == 400


@pytest.mark.django_db
def test_a_timestamp_more_than_five_minutes_ahead_is_rejected_and_a_slight_skew_is_not(
    staff_client, equipped_site
):
    now = timezone.now()
    ahead = post(staff_client, reading(now + timedelta(minutes=6), message_id="future"))
    assert ahead.status_code == 400
    assert "timestamp" in ahead.json()["errors"][0]["errors"]
    skewed = post(staff_client, reading(now + timedelta(minutes=4), message_id="skewed"))
    assert skewed.json()["accepted"] == 1


@pytest.mark.django_db
def test_an_operator_cannot_post_for_another_site(site, other_site):
    user = UserFactory(username="op-of-site002")
    MembershipFactory(user=user, site=other_site)
    client = jwt_client(user)
    refused = post(client, reading(message_id="m-1"))
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["errors"] == {"site_id": [services.NOT_YOUR_SITE]}
    allowed = post(client, reading(message_id="m-2", site_id="SITE002"))
    assert allowed.json()["accepted"] == 1
    assert list(TelemetryReading.objects.values_list("site__code", flat=True)) == ["SITE002"]


@pytest.mark.django_db
def test_a_viewer_and_an_anonymous_caller_cannot_post(site, anon_client):
    viewer = UserFactory(username="viewer")
    MembershipFactory(user=viewer, site=site, role="viewer")
    assert post(jwt_client(viewer), reading()).json()["rejected"] == 1
    assert post(anon_client, reading()).status_code == 401
    assert TelemetryReading.objects.count() == 0


@pytest.mark.django_db
def test_an_unknown_site_is_refused_like_a_foreign_one(staff_client, site):
    body = post(staff_client, reading(site_id="SITE999")).json()
    assert body["errors"][0]["errors"] == {"site_id": [services.NOT_YOUR_SITE]}


@pytest.mark.django_db
@override_settings(ENEXA_TELEMETRY_MAX_BATCH=3)
def test_a_batch_above_the_configured_size_is_refused_whole(staff_client, equipped_site):
    items = [reading(T0 + timedelta(seconds=i)) for i in range(4)]
    response = post(staff_client, {"items": items})
    assert response.status_code == 400
    assert "items" in response.json()["errors"]
    assert TelemetryReading.objects.count() == 0
    assert post(staff_client, {"items": items[:3]}).json()["accepted"] == 3


@pytest.mark.django_db
def test_a_malformed_envelope_is_a_problem_response(staff_client, site):
    response = post(staff_client, {"items": "nope"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"items": ["Must be a list."]}


@pytest.mark.django_db
def test_a_batch_of_a_thousand_is_stored_with_exact_counts(staff_client, equipped_site):
    items = [reading(T0 + timedelta(seconds=5 * i), message_id=f"m-{i}") for i in range(1000)]
    first = post(staff_client, {"items": items[:600]})
    assert first.json()["accepted"] == 600
    second = post(staff_client, {"items": items})
    assert second.json() == {"accepted": 400, "duplicate": 600, "rejected": 0, "errors": []}
    assert TelemetryReading.objects.count() == 1000
    assert BatteryUnitValue.objects.count() == 2000
    assert ChargerValue.objects.count() == 1000


@pytest.mark.django_db
def test_events_are_stored_once_per_event_id_with_the_same_counts(staff_client, site):
    event = {
        "site_id": "SITE001",
        "event_id": "e-1",
        "timestamp": format_timestamp(T0),
        "kind": "alarm",
        "severity": "critical",
        "message": "Overtemperature BAT1",
        "data": {"bit": 3},
    }
    first = staff_client.post("/v1/events", event, format="json")
    assert first.status_code == 201
    assert first.json() == {"accepted": 1, "duplicate": 0, "rejected": 0, "errors": []}
    batch = staff_client.post(
        "/v1/events",
        {
            "items": [
                event,
                {**event, "event_id": "e-2", "kind": "mode_change"},
                {**event, "event_id": "e-3", "kind": "nonsense"},
            ]
        },
        format="json",
    ).json()
    assert (batch["accepted"], batch["duplicate"], batch["rejected"]) == (1, 1, 1)
    assert batch["errors"][0]["index"] == 2 and batch["errors"][0]["message_id"] == "e-3"
    stored = Event.objects.get(event_id="e-1")
    assert (stored.kind, stored.severity, stored.data) == ("alarm", "critical", {"bit": 3})
    assert Event.objects.count() == 2


@pytest.mark.django_db
def test_a_controller_key_posts_only_for_its_own_site(equipped_site, other_site):
    client = controller_client(ControllerFactory(site=equipped_site, code="CTRL001"))
    body = post(
        client,
        {"items": [reading(message_id="own"), reading(message_id="foreign", site_id="SITE002")]},
    ).json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["errors"] == [
        {"index": 1, "message_id": "foreign", "errors": {"site_id": [services.NOT_YOUR_SITE]}}
    ]
    assert list(TelemetryReading.objects.values_list("message_id", flat=True)) == ["own"]
    event = {
        "site_id": "SITE002",
        "event_id": "e-x",
        "timestamp": format_timestamp(T0),
        "kind": "log",
    }
    assert client.post("/v1/events", event, format="json").json()["rejected"] == 1
    status = {"site_id": "SITE002", "online": True}
    assert client.post("/v1/status", status, format="json").status_code == 404


@pytest.mark.django_db
def test_a_controllers_status_report_records_the_config_version_it_applied(equipped_site):

    controller = ControllerFactory(site=equipped_site, code="CTRL001")
    ensure_initial_version(controller)
    client = controller_client(controller)
    response = client.post(
        "/v1/status",
        {"site_id": "SITE001", "online": True, "config_version": 1, "firmware_version": "2.0.5"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["controller_id"] == "CTRL001"
    assert ConfigState.objects.get(controller=controller).applied_version == 1


@pytest.mark.django_db
def test_a_sites_events_are_read_back_newest_first_and_filtered(staff_client, site):
    items = [
        {
            "site_id": "SITE001",
            "event_id": f"e-{i}",
            "kind": kind,
            "severity": severity,
            "timestamp": format_timestamp(T0 + timedelta(minutes=i)),
            "message": f"event {i}",
        }
        for i, (kind, severity) in enumerate(
            [("alarm", "critical"), ("mode_change", "info"), ("log", "info")]
        )
    ]
    staff_client.post("/v1/events", {"items": items}, format="json")
    window = "from=2024-01-15T09:00:00Z&to=2024-01-15T11:00:00Z"
    body = staff_client.get(f"/v1/sites/SITE001/events?{window}").json()
    assert [e["event_id"] for e in body["events"]] == ["e-2", "e-1", "e-0"]
    alarms = staff_client.get(f"/v1/sites/SITE001/events?{window}&severity=critical").json()
    assert [(e["event_id"], e["kind"], e["message"]) for e in alarms["events"]] == [
        ("e-0", "alarm", "event 0")
    ]


@pytest.mark.django_db
def test_a_unit_or_charger_listed_twice_in_a_reading_keeps_its_first_values(
    staff_client, equipped_site
):
    body = reading(message_id="twice")
    body["battery"]["units"].append({"id": "BAT1", "soc_pct": 10.0, "power_kw": 1.0})
    body["chargers"].append({"id": "CHG1", "power_kw": 1.0, "status": "available"})
    assert post(staff_client, body).status_code == 201
    units = dict(BatteryUnitValue.objects.values_list("unit_code", "soc_pct"))
    assert units == {"BAT1": 64.8, "BAT2": 65.2}
    assert list(ChargerValue.objects.values_list("charger_code", "power_kw")) == [("CHG1", 150.0)]
