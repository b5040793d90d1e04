"""Energy per period from the counters (resets counted from the new value, never negative) and
from integrated battery power, its CSV export, and availability per day and month, checked
against figures worked out by hand."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from enexa.telemetry import services
from enexa.telemetry.choices import TransitionReason
from enexa.telemetry.models import SiteStatusTransition
from enexa.telemetry.views import poster_for
from shared.fields import format_timestamp
from tests.hostile import hostile_text

T0 = datetime(2024, 5, 6, 10, 0, 0, tzinfo=UTC)


def reading(ts, *, imp=None, exp=None, battery_kw=None, charger_kwh=None, status=None):
    body = {"site_id": "SITE001", "timestamp": format_timestamp(ts)}
    grid = {}
    if imp is not None:
        grid["import_energy_kwh"] = imp
    if exp is not None:
        grid["export_energy_kwh"] = exp
    if grid:
        body["grid"] = grid
    if battery_kw is not None:
        body["battery"] = {"power_kw": battery_kw}
    if charger_kwh is not None or status is not None:
        charger = {"id": "CHG1", "status": status or "charging"}
        if charger_kwh is not None:
            charger["energy_kwh"] = charger_kwh
        body["chargers"] = [charger]
    return body


def post(staff, items):
    result = services.ingest_readings(poster_for(staff), {"items": items})
    assert result.rejected == 0, result.errors
    return result


@pytest.fixture
def metered(equipped_site, other_site, staff):
    """Two hours of SITE001: the import meter resets at 11:00, the charger starts a new
    session at 11:00, the battery charges at 60 kW then discharges at 30 kW. SITE002 has
    a reading that must not count."""
    post(
        staff,
        [
            reading(T0, imp=100, exp=50, battery_kw=-60, charger_kwh=0),
            reading(T0 + timedelta(minutes=30), imp=101, exp=50, battery_kw=-60, charger_kwh=10),
            reading(T0 + timedelta(minutes=59), imp=103, exp=51, battery_kw=30, charger_kwh=20),
            reading(T0 + timedelta(minutes=60), imp=2, exp=51.5, battery_kw=30, charger_kwh=1),
            {**reading(T0 + timedelta(minutes=30), imp=9999), "site_id": "SITE002"},
        ],
    )
    return equipped_site


def energy(client, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(f"/v1/sites/SITE001/energy?{query}")


HOURS = {"from": "2024-05-06T10:00:00Z", "to": "2024-05-06T12:00:00Z", "period": "hour"}


@pytest.mark.django_db
@override_settings(ENEXA_OFFLINE_AFTER_S=3600)  # readings 30 min apart are still contiguous
def test_hourly_energy_counts_a_meter_reset_from_the_new_value_and_integrates_the_battery(
    metered, staff_client
):
    response = energy(staff_client, **HOURS)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["methods"]["battery_charged_kwh"] == "integrated_power"
    ten, eleven = body["periods"]
    assert ten == {
        "start": "2024-05-06T10:00:00Z",
        "grid_import_kwh": 3.0,  # 100 -> 101 -> 103
        "grid_export_kwh": 1.0,
        "battery_charged_kwh": pytest.approx(59.0),  # 60 kW for 30 + 29 minutes
        "battery_discharged_kwh": 0.0,
        "chargers_kwh": 20.0,
    }
    assert eleven == {
        "start": "2024-05-06T11:00:00Z",
        "grid_import_kwh": 2.0,  # 103 -> 2: a reset, counted from the new value
        "grid_export_kwh": 0.5,
        "battery_charged_kwh": 0.0,
        "battery_discharged_kwh": pytest.approx(0.5),  # 30 kW for a minute
        "chargers_kwh": 1.0,  # a new session
    }


@pytest.mark.django_db
@override_settings(ENEXA_OFFLINE_AFTER_S=3600)
def test_a_range_starting_mid_series_takes_the_reading_before_it_as_the_reference(
    metered, staff_client
):
    response = energy(staff_client, **{**HOURS, "from": "2024-05-06T10:45:00Z"})
    (ten, eleven) = response.json()["periods"]
    assert ten["start"] == "2024-05-06T10:00:00Z"  # periods keep their own start
    assert ten["grid_import_kwh"] == 2.0  # 101 (before the range) -> 103
    assert ten["chargers_kwh"] == 10.0
    assert eleven["grid_import_kwh"] == 2.0


@pytest.mark.django_db
def test_battery_power_is_not_integrated_across_a_gap_longer_than_the_offline_threshold(
    metered, staff_client
):
    # Default threshold 120 s: only the one-minute step 10:59 -> 11:00 is integrated.
    ten, eleven = energy(staff_client, **HOURS).json()["periods"]
    assert ten["battery_charged_kwh"] is None and ten["battery_discharged_kwh"] is None
    assert eleven["battery_discharged_kwh"] == pytest.approx(0.5)


@pytest.mark.django_db
@override_settings(ENEXA_OFFLINE_AFTER_S=3600)
def test_daily_and_monthly_energy_sum_the_hours(metered, staff_client):
    (day,) = energy(
        staff_client, period="day", **{"from": "2024-05-01T00:00:00Z"}, to="2024-06-01T00:00:00Z"
    ).json()["periods"]
    assert day["start"] == "2024-05-06T00:00:00Z"
    assert (day["grid_import_kwh"], day["chargers_kwh"]) == (5.0, 21.0)
    (month,) = energy(
        staff_client, period="month", **{"from": "2024-01-01T00:00:00Z"}, to="2025-01-01T00:00:00Z"
    ).json()["periods"]
    assert month["start"] == "2024-05-01T00:00:00Z"
    assert month["battery_charged_kwh"] == pytest.approx(59.0)


@pytest.mark.django_db
def test_a_counter_that_only_goes_backwards_never_yields_negative_energy(site, staff):
    post(staff, [reading(T0 + timedelta(minutes=i), imp=50 - 10 * i) for i in range(5)])
    from enexa.telemetry.energy import PeriodRange, site_energy

    (hour,) = site_energy(site.pk, PeriodRange(T0, T0 + timedelta(hours=1), "hour"))
    assert hour["grid_import_kwh"] == 40 + 30 + 20 + 10  # each drop is a reset
    assert hour["grid_export_kwh"] is None


@pytest.mark.django_db
@override_settings(ENEXA_OFFLINE_AFTER_S=3600)
@pytest.mark.parametrize("how", ["query", "accept"])
def test_energy_exports_as_csv_by_query_or_accept_header(metered, staff_client, how):
    if how == "query":
        response = energy(staff_client, format="csv", **HOURS)
    else:
        query = "&".join(f"{k}={v}" for k, v in HOURS.items())
        response = staff_client.get(f"/v1/sites/SITE001/energy?{query}", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "start",
        "grid_import_kwh",
        "grid_export_kwh",
        "battery_charged_kwh",
        "battery_discharged_kwh",
        "chargers_kwh",
    ]
    assert rows[1][:3] == ["2024-05-06T10:00:00Z", "3", "1"]
    assert rows[2][1] == "2"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "week"}, "period"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2024-05-06T12:00:00Z", "to": "2024-05-06T10:00:00Z"}, "from"),
        ({"from": "2000-01-01T00:00:00Z", "to": "2024-01-01T00:00:00Z", "period": "hour"}, "from"),
    ],
)
def test_a_bad_energy_request_is_a_problem_naming_the_field(site, staff_client, params, field):
    response = energy(staff_client, **params)
    assert response.status_code == 400
    assert field in response.json()["errors"]


@pytest.mark.django_db
def test_an_operator_of_another_site_does_not_find_this_sites_energy(metered, other_site):
    from tests.conftest import jwt_client
    from tests.factories import MembershipFactory, UserFactory

    stranger = UserFactory(username="stranger")
    MembershipFactory(user=stranger, site=other_site)
    assert energy(jwt_client(stranger), **HOURS).status_code == 404
    assert jwt_client(stranger).get("/v1/sites/SITE001/availability").status_code == 404


def transition(site, at, online):
    SiteStatusTransition.objects.create(
        site=site, at=at, online=online, reason=TransitionReason.STATUS
    )


@pytest.mark.django_db
def test_daily_availability_is_the_share_of_observed_time_online(site, staff, staff_client):
    day = datetime(2024, 5, 6, tzinfo=UTC)
    transition(site, day - timedelta(days=1), True)  # online since the day before
    transition(site, day + timedelta(hours=6), False)  # six hours down
    transition(site, day + timedelta(hours=12), True)
    transition(site, day + timedelta(days=1, hours=18), False)  # down the last 6 h of day 2
    post(
        staff,
        [reading(day + timedelta(minutes=i), status="available") for i in range(3)]
        + [reading(day + timedelta(minutes=3), status="faulted")],
    )
    response = staff_client.get(
        "/v1/sites/SITE001/availability?period=day"
        "&from=2024-05-06T00:00:00Z&to=2024-05-08T00:00:00Z"
    )
    assert response.status_code == 200, response.json()
    first, second = response.json()["periods"]
    assert (first["observed_s"], first["online_s"], first["online_pct"]) == (86400, 64800, 75.0)
    assert first["chargers_available_pct"] == 75.0
    assert first["chargers"] == {"CHG1": 75.0}
    assert second["online_pct"] == 75.0
    assert second["chargers_available_pct"] is None


@pytest.mark.django_db
def test_monthly_availability_counts_only_time_after_the_first_transition(site, staff_client):
    transition(site, datetime(2024, 2, 15, tzinfo=UTC), True)
    response = staff_client.get(
        "/v1/sites/SITE001/availability?period=month"
        "&from=2024-01-01T00:00:00Z&to=2024-03-01T00:00:00Z"
    )
    january, february = response.json()["periods"]
    assert january["observed_s"] == 0 and january["online_pct"] is None
    assert february["start"] == "2024-02-01T00:00:00Z"
    assert february["end"] == "2024-03-01T00:00:00Z"
    assert february["observed_s"] == 15 * 86400  # the 15th to the end of a leap February
    assert february["online_pct"] == 100.0


@pytest.mark.django_db
def test_availability_refuses_an_hourly_period(site, staff_client):
    response = staff_client.get("/v1/sites/SITE001/availability?period=hour")
    assert response.status_code == 400
    assert "period" in response.json()["errors"]


@pytest.mark.django_db
def test_the_admin_shows_a_sites_availability_by_day_and_month(site, admin_client):
    from django.utils import timezone

    from enexa.telemetry.models import SiteStatus

    now = timezone.now()
    transition(site, now - timedelta(days=40), True)
    transition(site, now - timedelta(hours=1), False)
    status = SiteStatus.objects.create(site=site, online=False)
    page = admin_client.get(f"/admin/telemetry/sitestatus/{status.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Availability, last 31 days (UTC)" in html
    assert "Availability, last 12 months (UTC)" in html
    assert "100.0 %" in html  # a day before the outage
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    share = 100 * max(timedelta(0), now - day - timedelta(hours=1)) / (now - day)
    # Today's row: online but for the last hour. The page's own clock runs a little later than
    # `now` (and its figure is rounded), so compare within a tenth of a percent.
    today = re.search(rf"<td>{re.escape(format_timestamp(day))}</td><td>([\d.]+) %</td>", html)
    assert today is not None and abs(float(today[1]) - share) <= 0.1


@pytest.mark.django_db
def test_energy_past_raw_retention_comes_from_the_hourly_roll_up(site, staff, staff_client):
    from django.core.management import call_command
    from django.utils import timezone

    from enexa.telemetry.models import HourlyEnergy, TelemetryReading

    old_hour = (timezone.now() - timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    post(
        staff,
        [reading(old_hour + timedelta(minutes=m), imp=10 + m) for m in (0, 20, 40)]
        + [reading(old_hour + timedelta(minutes=70), imp=75)],
    )
    call_command("prune_telemetry")
    assert not TelemetryReading.objects.exists()
    assert HourlyEnergy.objects.count() == 2
    call_command("prune_telemetry")  # again: nothing counted twice
    assert HourlyEnergy.objects.count() == 2
    response = energy(
        staff_client,
        period="day",
        **{"from": format_timestamp(old_hour - timedelta(days=1))},
        to=format_timestamp(old_hour + timedelta(days=1)),
    )
    periods = response.json()["periods"]
    assert sum(p["grid_import_kwh"] for p in periods) == 65.0  # 10 -> 50 -> 75


@given(
    st.dictionaries(
        st.sampled_from(["from", "to", "period"]),
        st.one_of(
            hostile_text,
            st.sampled_from(["hour", "day", "month", "week", ""]),
            st.datetimes(timezones=st.just(UTC)).map(format_timestamp),
        ),
    )
)
def test_the_period_range_parser_answers_a_range_or_field_errors_for_any_query(params):
    from enexa.core.errors import InvalidInput
    from enexa.telemetry.energy import MAX_PERIODS, PERIOD_SECONDS, parse_period_range

    try:
        rng = parse_period_range(params, now=T0)
    except InvalidInput as exc:
        assert set(exc.errors) <= {"from", "to", "period"} and exc.errors
        return
    assert rng.start < rng.end and rng.period in ("hour", "day", "month")
    assert (rng.end - rng.start).total_seconds() <= MAX_PERIODS * PERIOD_SECONDS[rng.period]
