"""Telemetry at fleet scale: exactly-once across a day (partition) boundary, aggregates kept up
to date from the minutes ingest marks (late readings included), retention dropping whole days
while the hourly aggregates stay, and the partitions the worker creates ahead.

On PostgreSQL (CI) these run against the daily partitions; on SQLite against the one table;
the assertions about partitions themselves hold on PostgreSQL only and are made there."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enexa.telemetry import aggregates, partitions, services
from enexa.telemetry.models import StaleMinute, TelemetryAggregate, TelemetryReading
from enexa.telemetry.queries import prune_telemetry
from enexa.telemetry.tasks import create_partitions
from enexa.telemetry.views import poster_for
from shared.fields import format_timestamp
from tests.factories import SiteFactory

MIDNIGHT = datetime(2024, 3, 1, tzinfo=UTC)


def reading(ts, soc=50.0, message_id=None, backfilled=False, grid_kw=10.0):
    body = {
        "site_id": "SITE001",
        "timestamp": format_timestamp(ts),
        "battery": {"soc_pct": soc, "units": [{"id": "BAT1", "soc_pct": soc}]},
        "grid": {"import_kw": grid_kw, "export_kw": 0},
        "chargers": [{"id": "CHG1", "power_kw": 5.0}],
        "backfilled": backfilled,
    }
    if message_id:
        body["message_id"] = message_id
    return body


def ingest(staff, *items):
    return services.ingest_readings(poster_for(staff), {"items": list(items)})


def partition_of(reading_pk: int) -> str | None:
    """The partition a reading was stored in (PostgreSQL), None elsewhere."""
    if not partitions.is_partitioned():
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {partitions.READINGS} WHERE id = %s",
            [reading_pk],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_readings_either_side_of_midnight_sent_twice_are_stored_once(site, staff):
    before, after = MIDNIGHT - timedelta(seconds=1), MIDNIGHT
    batch = [
        reading(before, message_id="m-before"),
        reading(after, message_id="m-after"),
        reading(before),  # identified by (site, timestamp)
        reading(after),
    ]
    assert ingest(staff, *batch).accepted == 4
    again = ingest(staff, *batch)
    assert (again.accepted, again.duplicate) == (0, 4)
    assert TelemetryReading.objects.count() == 4
    if partitions.is_partitioned():
        stored = TelemetryReading.objects.order_by("timestamp", "message_id")
        assert [partition_of(r.pk) for r in stored] == [
            "telemetry_telemetryreading_p20240229",
            "telemetry_telemetryreading_p20240229",
            "telemetry_telemetryreading_p20240301",
            "telemetry_telemetryreading_p20240301",
        ]


@pytest.mark.django_db
def test_a_message_id_sent_again_later_the_same_day_is_a_duplicate(site, staff):
    assert ingest(staff, reading(MIDNIGHT, message_id="m-1")).accepted == 1
    later = ingest(staff, reading(MIDNIGHT + timedelta(hours=5), message_id="m-1"))
    assert (later.accepted, later.duplicate) == (0, 1)


def hour_point(site, hour):
    points = services.series(site, hour, hour + timedelta(hours=1), "1h")
    assert [p["timestamp"] for p in points] == [format_timestamp(hour)]
    return points[0]


@pytest.mark.django_db
def test_a_backfilled_reading_updates_the_minute_quarter_and_hour_it_falls_in(site, staff):
    hour = MIDNIGHT + timedelta(hours=10)
    ingest(
        staff,
        reading(hour + timedelta(minutes=1), soc=20),
        reading(hour + timedelta(minutes=20), soc=40),
    )
    assert services.refresh_aggregates() == 2  # what the worker does every few seconds
    assert hour_point(site, hour)["count"] == 2

    # The gateway's outbox sends a reading it held during an outage, at 10:01:30.
    late = hour + timedelta(minutes=1, seconds=30)
    ingest(staff, reading(late, soc=80, backfilled=True))
    assert StaleMinute.objects.count() == 1
    services.refresh_aggregates()

    minute = services.series(site, hour + timedelta(minutes=1), hour + timedelta(minutes=2), "1m")
    assert minute[0]["count"] == 2
    assert minute[0]["battery_soc_pct"] == {"avg": 50.0, "min": 20.0, "max": 80.0, "last": 80.0}
    quarter = services.series(site, hour, hour + timedelta(minutes=15), "15m")
    assert (quarter[0]["count"], quarter[0]["battery_soc_pct"]["last"]) == (2, 80.0)
    point = hour_point(site, hour)
    assert point["count"] == 3
    # The newest reading of the hour is still the one at 10:20, whatever arrived last.
    soc = point["battery_soc_pct"]
    assert (soc["min"], soc["max"], soc["last"]) == (20.0, 80.0, 40.0)
    assert soc["avg"] == pytest.approx(140 / 3)


@pytest.mark.django_db
def test_a_chart_read_includes_readings_the_worker_has_not_refreshed_yet(site, staff):
    ingest(staff, reading(MIDNIGHT, soc=30), reading(MIDNIGHT + timedelta(seconds=5), soc=50))
    points = services.series(site, MIDNIGHT, MIDNIGHT + timedelta(minutes=1), "1m")
    assert points[0]["battery_soc_pct"]["avg"] == 40.0
    assert not StaleMinute.objects.exists()


@pytest.mark.django_db
def test_dropping_a_days_partition_keeps_the_hourly_aggregates_it_rolled_up(site, staff, settings):
    settings.ENEXA_TELEMETRY_RAW_RETENTION_DAYS = 30
    now = timezone.now()
    hour = (now - timedelta(days=35)).replace(minute=0, second=0, microsecond=0)
    ingest(
        staff,
        reading(hour + timedelta(minutes=5), soc=10, grid_kw=2),
        reading(hour + timedelta(minutes=45), soc=30, grid_kw=6),
        reading(now - timedelta(hours=1), soc=90),
    )
    day = partitions.day_of(hour)
    if partitions.is_partitioned():
        assert day in partitions.existing_days()
    # No refresh ran: retention refreshes what is stale before it drops anything.
    counts = prune_telemetry(now=now)

    assert list(TelemetryReading.objects.values_list("battery_soc_pct", flat=True)) == [90]
    if partitions.is_partitioned():
        assert counts["raw_days_dropped"] >= 1
        assert day not in partitions.existing_days()
    point = hour_point(site, hour)
    assert point["count"] == 2
    assert point["battery_soc_pct"] == {"avg": 20.0, "min": 10.0, "max": 30.0, "last": 30.0}
    assert point["grid_import_kw"]["avg"] == 4.0
    # The minutes and quarters of the dropped day went with it.
    gone = TelemetryAggregate.objects.filter(bucket_at__lt=now - timedelta(days=31))
    assert list(gone.values_list("resolution_s", flat=True)) == [3600]


@pytest.mark.django_db
def test_a_reading_arriving_after_its_day_left_retention_does_not_shrink_its_hour(
    site, staff, settings
):
    settings.ENEXA_TELEMETRY_RAW_RETENTION_DAYS = 30
    hour = (timezone.now() - timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    ingest(staff, reading(hour, soc=10), reading(hour + timedelta(minutes=30), soc=30))
    prune_telemetry()
    ingest(staff, reading(hour + timedelta(minutes=50), soc=99, backfilled=True))
    services.refresh_aggregates()
    assert hour_point(site, hour)["count"] == 2


@pytest.mark.django_db
def test_the_worker_creates_the_days_ahead(site):
    created = create_partitions()
    if partitions.is_partitioned():
        today = partitions.day_of(timezone.now())
        wanted = {today + timedelta(days=n) for n in range(-1, partitions.AHEAD_DAYS + 1)}
        assert wanted <= partitions.existing_days()
        assert {datetime.fromisoformat(d).date() for d in created} <= wanted
    else:
        assert created == []


def by_hand(readings: list[tuple[datetime, float]], seconds: int) -> dict:
    """Buckets of (timestamp, soc) worked out in Python: count, avg, min, max, last."""
    buckets: dict[datetime, list] = {}
    for ts, soc in readings:
        buckets.setdefault(aggregates.floor_to(ts, seconds), []).append((ts, soc))
    out = {}
    for start, items in buckets.items():
        values = [v for _, v in items]
        out[format_timestamp(start)] = (
            len(items),
            pytest.approx(sum(values) / len(values)),
            min(values),
            max(values),
            max(items)[1],
        )
    return out


@pytest.mark.django_db
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    arrivals=st.lists(
        st.lists(
            st.tuples(st.integers(0, 3 * 3600 - 1), st.integers(0, 100)),
            min_size=1,
            max_size=15,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_aggregates_kept_step_by_step_equal_those_worked_out_from_all_readings(
    site, staff, arrivals
):
    TelemetryAggregate.objects.all().delete()
    TelemetryReading.objects.all().delete()
    StaleMinute.objects.all().delete()
    stored: dict[datetime, float] = {}
    for batch in arrivals:  # in any time order, a refresh between the batches
        items = []
        for offset_s, soc in batch:
            ts = MIDNIGHT + timedelta(seconds=offset_s)
            if ts not in stored:
                stored[ts] = float(soc)
                items.append(reading(ts, soc=soc))
        if items:
            ingest(staff, *items)
        services.refresh_aggregates()
    span = (MIDNIGHT, MIDNIGHT + timedelta(hours=3))
    for resolution, seconds in (("1m", 60), ("15m", 900), ("1h", 3600)):
        points = services.series(site, *span, resolution)
        got = {
            p["timestamp"]: (
                p["count"],
                p["battery_soc_pct"]["avg"],
                p["battery_soc_pct"]["min"],
                p["battery_soc_pct"]["max"],
                p["battery_soc_pct"]["last"],
            )
            for p in points
        }
        assert got == by_hand(list(stored.items()), seconds)


@pytest.mark.django_db
def test_the_latest_reading_of_every_site_comes_back_in_one_call(site, other_site, staff):
    ingest(staff, reading(MIDNIGHT, soc=10), reading(MIDNIGHT + timedelta(days=1), soc=70))
    quiet = SiteFactory(code="SITE003")
    latest = services.latest_readings([site, other_site, quiet])
    assert set(latest) == {"SITE001", "SITE002", "SITE003"}
    assert latest["SITE002"] is None and latest["SITE003"] is None
    newest = latest["SITE001"]
    assert newest["timestamp"] == format_timestamp(MIDNIGHT + timedelta(days=1))
    assert newest["battery"] == {"soc_pct": 70.0, "units": [{"id": "BAT1", "soc_pct": 70.0}]}
    assert newest["chargers"] == [{"id": "CHG1", "power_kw": 5.0}]
