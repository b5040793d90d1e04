"""Reading telemetry back: raw readings, the maintained aggregates checked against values
worked out by hand, the latest reading, CSV export, and retention."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from enexa.telemetry import services
from enexa.telemetry.models import BatteryUnitValue, TelemetryAggregate, TelemetryReading
from enexa.telemetry.views import poster_for
from shared.fields import format_timestamp
from tests.conftest import jwt_client
from tests.factories import MembershipFactory, UserFactory

T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC)


def reading(ts, soc, grid_kw, site_id="SITE001", power_kw=None):
    body = {
        "site_id": site_id,
        "timestamp": format_timestamp(ts),
        "battery": {"soc_pct": soc, "units": [{"id": "BAT1", "soc_pct": soc}]},
        "grid": {"import_kw": grid_kw, "export_kw": 0},
    }
    if power_kw is not None:
        body["battery"]["power_kw"] = power_kw
    return body


@pytest.fixture
def series(site, other_site, staff):
    """SITE001: SOC 10..50 and grid import 1..5 kW at T0 + 0, 20, 40, 60, 80 s; battery power
    only in the first three. SITE002 has a reading in the same range that must not count."""
    items = [
        reading(
            T0 + timedelta(seconds=20 * i),
            10 * (i + 1),
            i + 1,
            power_kw=[-30.0, 10.0, 5.0][i] if i < 3 else None,
        )
        for i in range(5)
    ]
    items.append(reading(T0 + timedelta(seconds=30), 99, 99, site_id="SITE002"))
    items.append(reading(T0 + timedelta(minutes=15), 77, 7))  # at `to`: excluded
    assert services.ingest_readings(poster_for(staff), {"items": items}).accepted == 7
    return site


def get(client, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(f"/v1/sites/SITE001/telemetry?{query}")


RANGE = {"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T10:15:00Z"}


@pytest.mark.django_db
def test_one_minute_buckets_match_the_hand_computed_avg_min_max_last(series, staff_client):
    response = get(staff_client, resolution="1m", **RANGE)
    assert response.status_code == 200, response.json()
    points = response.json()["points"]
    assert [p["timestamp"] for p in points] == ["2024-01-15T10:00:00Z", "2024-01-15T10:01:00Z"]
    first, second = points
    assert first["count"] == 3
    assert first["battery_soc_pct"] == {"avg": 20.0, "min": 10.0, "max": 30.0, "last": 30.0}
    assert first["grid_import_kw"] == {"avg": 2.0, "min": 1.0, "max": 3.0, "last": 3.0}
    assert first["battery_power_kw"]["avg"] == pytest.approx(-5.0)
    assert (first["battery_power_kw"]["min"], first["battery_power_kw"]["max"]) == (-30.0, 10.0)
    assert second["count"] == 2
    assert second["battery_soc_pct"] == {"avg": 45.0, "min": 40.0, "max": 50.0, "last": 50.0}
    assert second["battery_power_kw"] is None  # no value in that minute
    assert second["chargers_power_kw"] is None


@pytest.mark.django_db
def test_a_quarter_bucket_covers_the_whole_range(series, staff_client):
    points = get(staff_client, resolution="15m", **RANGE).json()["points"]
    assert len(points) == 1
    assert points[0]["count"] == 5
    assert points[0]["battery_soc_pct"] == {"avg": 30.0, "min": 10.0, "max": 50.0, "last": 50.0}
    assert points[0]["grid_import_kw"]["avg"] == 3.0


@pytest.mark.django_db
def test_a_bucket_reaching_past_the_range_comes_back_whole(series, staff_client):
    # The hour from 10:00 holds the reading at 10:15 too, which the range [10:00, 10:15) leaves
    # out: buckets are kept whole, not recomputed for each range.
    points = get(staff_client, resolution="1h", **RANGE).json()["points"]
    assert len(points) == 1
    assert points[0]["count"] == 6
    assert points[0]["battery_soc_pct"] == {
        "avg": pytest.approx(227 / 6),
        "min": 10.0,
        "max": 77.0,
        "last": 77.0,
    }


@pytest.mark.django_db
def test_raw_readings_come_back_in_the_contract_shape_in_time_order(series, staff_client):
    body = get(staff_client, **RANGE).json()
    assert body["resolution"] == "raw" and body["next_from"] is None
    assert [p["battery"]["soc_pct"] for p in body["points"]] == [10, 20, 30, 40, 50]
    first = body["points"][0]
    assert first["site_id"] == "SITE001" and first["timestamp"] == "2024-01-15T10:00:00Z"
    assert first["battery"]["units"] == [{"id": "BAT1", "soc_pct": 10.0}]
    assert first["grid"] == {"import_kw": 1.0, "export_kw": 0.0}


@pytest.mark.django_db
def test_a_long_raw_range_is_paged_with_next_from(series, staff_client, settings):
    settings.ENEXA_TELEMETRY_MAX_POINTS = 2
    body = get(staff_client, **RANGE).json()
    assert len(body["points"]) == 2
    assert body["next_from"] == "2024-01-15T10:00:40Z"


@pytest.mark.django_db
def test_the_latest_reading_is_the_newest(series, staff_client):
    body = staff_client.get("/v1/sites/SITE001/telemetry/latest").json()
    assert body["reading"]["battery"]["soc_pct"] == 77


@pytest.mark.django_db
def test_a_bad_range_is_refused_with_field_errors(site, staff_client):
    body = get(staff_client, **{"from": "yesterday", "resolution": "5m"}).json()
    assert set(body["errors"]) == {"from", "resolution"}
    reversed_range = get(staff_client, **{"from": RANGE["to"], "to": RANGE["from"]})
    assert reversed_range.status_code == 400


@pytest.mark.django_db
def test_csv_export_streams_the_raw_range(series, staff_client):
    response = get(staff_client, format="csv", **RANGE)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["battery_soc_pct"] for r in rows] == ["10", "20", "30", "40", "50"]
    assert rows[0]["timestamp"] == "2024-01-15T10:00:00Z" and rows[0]["battery_power_kw"] == "-30"
    assert rows[3]["battery_power_kw"] == ""


@pytest.mark.django_db
def test_csv_export_of_aggregates_has_a_column_per_statistic(series, staff_client):
    response = get(staff_client, format="csv", resolution="1m", **RANGE)
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 2
    assert (rows[1]["count"], rows[1]["battery_soc_pct_avg"], rows[1]["battery_soc_pct_last"]) == (
        "2",
        "45",
        "50",
    )


@pytest.mark.django_db
def test_another_sites_telemetry_is_not_found(series, other_site):
    user = UserFactory(username="op2")
    MembershipFactory(user=user, site=other_site)
    client = jwt_client(user)
    assert get(client, **RANGE).status_code == 404
    assert client.get("/v1/sites/SITE001/telemetry/latest").status_code == 404
    assert client.get("/v1/sites/SITE002/telemetry/latest").status_code == 200


@pytest.mark.django_db
def test_retention_drops_old_raw_readings_and_keeps_their_hourly_aggregates(site, staff, settings):
    settings.ENEXA_TELEMETRY_RAW_RETENTION_DAYS = 30
    settings.ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS = 730
    now = timezone.now()
    old_hour = (now - timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    recent = now - timedelta(days=1)
    items = [
        reading(old_hour + timedelta(minutes=10), 20, 4),
        reading(old_hour + timedelta(minutes=50), 40, 8),
        reading(recent, 60, 1),
    ]
    services.ingest_readings(poster_for(staff), {"items": items})
    TelemetryAggregate.objects.create(
        site=site, resolution_s=3600, bucket_at=now - timedelta(days=800), count=1, last_at=now
    )

    call_command("prune_telemetry")

    assert list(TelemetryReading.objects.values_list("battery_soc_pct", flat=True)) == [60]
    assert BatteryUnitValue.objects.count() == 1
    old = TelemetryAggregate.objects.filter(bucket_at__lt=now - timedelta(days=30))
    aggregate = old.get()  # the hourly one; its minutes and quarter went with the raw day
    assert (aggregate.resolution_s, aggregate.bucket_at, aggregate.count) == (3600, old_hour, 2)
    assert (
        aggregate.battery_soc_pct_sum / aggregate.battery_soc_pct_n,
        aggregate.battery_soc_pct_min,
        aggregate.battery_soc_pct_max,
        aggregate.battery_soc_pct_last,
    ) == (30, 20, 40, 40)
    assert aggregate.grid_import_kw_sum / aggregate.grid_import_kw_n == 6
    recent_buckets = TelemetryAggregate.objects.filter(bucket_at__gte=now - timedelta(days=2))
    assert sorted(recent_buckets.values_list("resolution_s", flat=True)) == [60, 900, 3600]
    call_command("prune_telemetry")  # again: nothing changes
    assert old.get().count == 2


@pytest.mark.django_db
def test_hourly_reads_reach_back_into_the_aggregates_past_raw_retention(site, staff, staff_client):
    old_hour = (timezone.now() - timedelta(days=100)).replace(minute=0, second=0, microsecond=0)
    services.ingest_readings(
        poster_for(staff),
        {"items": [reading(old_hour + timedelta(minutes=m), 10 + m, 2) for m in (0, 30)]},
    )
    call_command("prune_telemetry")
    assert not TelemetryReading.objects.exists()
    services.ingest_readings(poster_for(staff), reading(old_hour + timedelta(hours=1), 70, 3))
    window = {
        "from": format_timestamp(old_hour - timedelta(hours=2)),
        "to": format_timestamp(old_hour + timedelta(hours=2)),
    }
    points = get(staff_client, resolution="1h", **window).json()["points"]
    assert [(p["timestamp"], p["count"]) for p in points] == [
        (format_timestamp(old_hour), 2),
        (format_timestamp(old_hour + timedelta(hours=1)), 1),
    ]
    assert points[0]["battery_soc_pct"] == {"avg": 25.0, "min": 10.0, "max": 40.0, "last": 40.0}
