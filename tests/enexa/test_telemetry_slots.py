"""Per-slot statistics for any slot of whole minutes (enexa.telemetry.queries.slot_stats), read
from the coarsest maintained aggregate that tiles the slot: the same figures as computed over
the raw readings, the newest value that exists as `last`, and minutes not yet refreshed by the
worker counted."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enexa.telemetry.models import StaleMinute
from enexa.telemetry.queries import source_resolution
from enexa.telemetry.services import slot_stats
from tests.factories import SiteFactory, add_readings

pytestmark = pytest.mark.django_db

HOUR = datetime(2026, 3, 2, 10, tzinfo=UTC)
SPAN_S = 3 * 3600
SLOTS_S = (60, 120, 300, 900, 1800, 3600, 7200)
METRICS = ("battery_soc_pct", "grid_import_kw")

# A reading: (seconds after HOUR, SOC or None, grid import or None); small integers so sums are
# exact whatever the order they are added in.
readings_strategy = st.lists(
    st.tuples(
        st.integers(0, SPAN_S - 1),
        st.none() | st.integers(0, 100),
        st.none() | st.integers(-50, 500),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda r: r[0],
)


def expected_slots(readings, seconds: int) -> dict[datetime, dict]:
    """What the slots hold, computed over the raw readings: count, and per metric n, avg, min,
    max and `last`, the value of the newest reading of the newest sub-bucket (of the
    aggregate the slot is read from) whose newest reading has one."""
    sub_s = source_resolution(seconds)
    by_slot: dict[int, list] = {}
    for offset, *values in readings:
        by_slot.setdefault(offset // seconds, []).append((offset, values))
    out = {}
    for slot, rows in by_slot.items():
        rows.sort()
        point: dict = {"count": len(rows)}
        for i, metric in enumerate(METRICS):
            present = [v[i] for _, v in rows if v[i] is not None]
            if not present:
                continue
            newest_of_sub: dict[int, float | None] = {}
            for offset, v in rows:  # oldest first: each sub-bucket ends with its newest
                newest_of_sub[offset // sub_s] = v[i]
            lasts = [v for _, v in sorted(newest_of_sub.items()) if v is not None]
            point[metric] = {
                "n": len(present),
                "avg": sum(present) / len(present),
                "min": min(present),
                "max": max(present),
                "last": lasts[-1] if lasts else None,
            }
        out[HOUR + timedelta(seconds=slot * seconds)] = point
    return out


def store(site, readings) -> None:
    add_readings(
        site,
        (
            (
                HOUR + timedelta(seconds=offset),
                {"battery_soc_pct": soc, "grid_import_kw": grid}
                | ({"battery_power_kw": 1.0} if soc is None else {}),
            )
            for offset, soc, grid in readings
        ),
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(readings=readings_strategy, seconds=st.sampled_from(SLOTS_S))
def test_any_slot_of_whole_minutes_has_the_statistics_of_its_raw_readings(readings, seconds):
    site = SiteFactory()  # a fresh site per example: nothing left from the previous one
    store(site, readings)
    slots = slot_stats(site.pk, HOUR, HOUR + timedelta(seconds=SPAN_S), seconds)
    got = {}
    for slot in slots:
        point: dict = {"count": slot.count}
        for metric in METRICS:
            if (stats := slot.metrics.get(metric)) is not None:
                point[metric] = {
                    "n": stats.n,
                    "avg": pytest.approx(stats.avg),
                    "min": stats.min,
                    "max": stats.max,
                    "last": stats.last,
                }
        got[slot.start] = point
    assert got == expected_slots(readings, seconds)
    assert [s.start for s in slots] == sorted(got)


def test_a_slot_reads_the_coarsest_aggregate_that_tiles_it():
    assert [source_resolution(s) for s in SLOTS_S] == [60, 60, 60, 900, 900, 3600, 3600]
    assert source_resolution(2700) == 900 and source_resolution(5400) == 900


@pytest.mark.parametrize("seconds", [0, -60, 30, 90])
def test_a_slot_that_is_not_whole_minutes_is_refused(seconds):
    with pytest.raises(ValueError, match="multiple of 60"):
        source_resolution(seconds)


def test_last_comes_from_the_newest_sub_bucket_that_has_one(site):
    # Two hours read from the hourly aggregates; the second hour's readings have no SOC.
    store(site, [(60, 40, 100), (1000, 45, 100), (4000, None, 120)])
    (slot,) = slot_stats(site.pk, HOUR, HOUR + timedelta(hours=2), 7200)
    assert slot.count == 3
    assert slot.last("battery_soc_pct") == 45
    assert slot.last("grid_import_kw") == 120
    assert slot.avg("battery_soc_pct") == 42.5 and slot.max("grid_import_kw") == 120
    assert slot.avg("chargers_power_kw") is None


def test_slots_overlapping_the_range_count_whole_and_readings_not_yet_refreshed_count(site):
    store(site, [(10, 50, 100), (290, 52, 140)])
    assert StaleMinute.objects.filter(site=site).exists()  # the worker has not run
    (slot,) = slot_stats(site.pk, HOUR + timedelta(minutes=2), HOUR + timedelta(minutes=3), 300)
    assert slot.start == HOUR
    assert (slot.count, slot.avg("grid_import_kw"), slot.last("battery_soc_pct")) == (2, 120, 52)
    assert not StaleMinute.objects.filter(site=site).exists()
    assert slot_stats(site.pk, HOUR + timedelta(minutes=5), HOUR + timedelta(hours=1), 300) == []
