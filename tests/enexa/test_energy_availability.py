"""Energy per period from the counters (resets counted from the new value, never negative) and
from integrated battery power, its CSV export, and availability per day and month, checked
against figures worked out by hand."""

import csv
import io
import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from hypothesis import example, given
from hypothesis import strategies as st

from enexa.registry.models import timezone_names
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
@pytest.mark.parametrize(
    ("tz", "day_start", "month_start"),
    [
        # The site's zone (Europe/Berlin, CEST in May): days and months begin at 22:00 UTC.
        (None, "2024-05-05T22:00:00Z", "2024-04-30T22:00:00Z"),
        ("UTC", "2024-05-06T00:00:00Z", "2024-05-01T00:00:00Z"),
        ("America/New_York", "2024-05-06T04:00:00Z", "2024-05-01T04:00:00Z"),
    ],
)
def test_daily_and_monthly_energy_sum_the_hours_of_the_local_day_and_month(
    metered, staff_client, tz, day_start, month_start
):
    zone = {"tz": tz} if tz else {}
    body = energy(
        staff_client,
        period="day",
        **{"from": "2024-05-01T00:00:00Z"},
        to="2024-06-01T00:00:00Z",
        **zone,
    ).json()
    assert body["timezone"] == (tz or "Europe/Berlin")
    (day,) = body["periods"]
    assert day["start"] == day_start
    assert (day["grid_import_kwh"], day["chargers_kwh"]) == (5.0, 21.0)
    (month,) = energy(
        staff_client,
        period="month",
        **{"from": "2024-01-01T00:00:00Z"},
        to="2025-01-01T00:00:00Z",
        **zone,
    ).json()["periods"]
    assert month["start"] == month_start
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
        "timezone",
    ]
    assert rows[1][:3] == ["2024-05-06T10:00:00Z", "3", "1"]
    assert rows[2][1] == "2"
    assert {row[-1] for row in rows[1:]} == {"Europe/Berlin"}  # the site's, as no `tz` was given


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
        "/v1/sites/SITE001/availability?period=day&tz=UTC"
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
        "/v1/sites/SITE001/availability?period=month&tz=UTC"
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
def test_the_admin_shows_a_sites_availability_by_day_and_month_of_its_time_zone(site, admin_client):
    from django.utils import timezone

    from enexa.telemetry.models import SiteStatus

    now = timezone.now()
    transition(site, now - timedelta(days=40), True)
    transition(site, now - timedelta(hours=1), False)
    status = SiteStatus.objects.create(site=site, online=False)
    page = admin_client.get(f"/admin/telemetry/sitestatus/{status.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Availability by local day, last 31 days" in html
    assert "Availability by local month, last 12 months" in html
    assert "Days in Europe/Berlin" in html and "Months in Europe/Berlin" in html
    assert "100.0 %" in html  # a day before the outage
    day = now.astimezone(ZoneInfo("Europe/Berlin")).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    share = 100 * max(timedelta(0), now - day - timedelta(hours=1)) / (now - day)
    # Today's row, named by its local date: online since the site's midnight but for the last
    # hour. The page's own clock runs a little later than `now` (and its figure is rounded),
    # so compare within a tenth of a percent.
    today = re.search(rf"<td>{day:%Y-%m-%d}</td><td>([\d.]+) %</td>", html)
    assert today is not None and abs(float(today[1]) - share) <= 0.1
    assert f"<td>{day:%Y-%m}</td>" in html  # this month's row


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
        st.sampled_from(["from", "to", "period", "tz"]),
        st.one_of(
            hostile_text,
            st.sampled_from(["hour", "day", "month", "week", ""]),
            st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "europe/berlin", "../etc"]),
            st.datetimes(timezones=st.just(UTC)).map(format_timestamp),
        ),
    )
)
def test_the_period_range_parser_answers_a_range_or_field_errors_for_any_query(params):
    from enexa.core.errors import InvalidInput
    from enexa.telemetry.periods import (
        MAX_PERIODS,
        PERIOD_SECONDS,
        boundaries,
        parse_period_range,
    )

    try:
        rng = parse_period_range(params, now=T0, default_tz="Europe/Berlin")
    except InvalidInput as exc:
        assert set(exc.errors) <= {"from", "to", "period", "tz"} and exc.errors
        return
    assert rng.start < rng.end and rng.period in ("hour", "day", "month")
    assert (rng.end - rng.start).total_seconds() <= MAX_PERIODS * PERIOD_SECONDS[rng.period]
    assert rng.tz == (params.get("tz") or "Europe/Berlin")
    # Any accepted range can be cut into its periods, up to the calendar's last day.
    assert len(boundaries(rng)) - 1 <= MAX_PERIODS + 2


def berlin_hourly(staff, first: datetime, hours: int):
    """A reading every UTC hour from `first`, the import counter one kWh up each time."""
    post(staff, [reading(first + timedelta(hours=i), imp=i) for i in range(hours + 1)])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("from_", "to", "expected"),
    [
        # Spring: 2024-03-31 has 23 hours in Berlin (02:00 CET -> 03:00 CEST).
        (
            "2024-03-29T23:00:00Z",
            "2024-03-31T22:00:00Z",
            [("2024-03-29T23:00:00Z", 24.0), ("2024-03-30T23:00:00Z", 23.0)],
        ),
        # Autumn: 2024-10-27 has 25 hours (03:00 CEST -> 02:00 CET).
        (
            "2024-10-25T22:00:00Z",
            "2024-10-27T23:00:00Z",
            [("2024-10-25T22:00:00Z", 24.0), ("2024-10-26T22:00:00Z", 25.0)],
        ),
    ],
)
def test_energy_per_day_follows_the_sites_clock_changes(
    site, staff, staff_client, from_, to, expected
):
    first = datetime.fromisoformat(from_) - timedelta(hours=1)  # the reference reading
    berlin_hourly(staff, first, 50)
    body = energy(staff_client, period="day", **{"from": from_}, to=to).json()
    assert body["timezone"] == "Europe/Berlin"
    assert [(p["start"], p["grid_import_kwh"]) for p in body["periods"]] == expected
    # The same hours in UTC days: 24 each (the range is cut at UTC midnight).
    in_utc = energy(staff_client, period="day", **{"from": from_}, to=to, tz="UTC").json()
    assert in_utc["timezone"] == "UTC"
    assert {p["start"][11:] for p in in_utc["periods"]} == {"00:00:00Z"}
    assert sum(p["grid_import_kwh"] for p in in_utc["periods"]) == sum(e[1] for e in expected)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        # 21:30 UTC is 23:30 on 31 March in Berlin, 22:30 UTC is 00:30 on 1 April.
        (None, [("2024-02-29T23:00:00Z", 1.0), ("2024-03-31T22:00:00Z", 2.0)]),
        ("UTC", [("2024-03-01T00:00:00Z", 3.0)]),
    ],
)
def test_energy_per_month_is_cut_at_the_local_midnight_of_the_first(
    site, staff, staff_client, tz, expected
):
    end_of_march = datetime(2024, 3, 31, 21, 0, tzinfo=UTC)
    post(
        staff,
        [
            reading(end_of_march, imp=0),
            reading(end_of_march + timedelta(minutes=30), imp=1),
            reading(end_of_march + timedelta(minutes=90), imp=3),
        ],
    )
    zone = {"tz": tz} if tz else {}
    periods = energy(
        staff_client,
        period="month",
        **{"from": "2024-01-01T00:00:00Z"},
        to="2025-01-01T00:00:00Z",
        **zone,
    ).json()["periods"]
    assert [(p["start"], p["grid_import_kwh"]) for p in periods] == expected


@pytest.mark.django_db
def test_availability_per_local_day_has_23_and_25_hour_days_and_counts_reports_by_local_day(
    site, staff, staff_client
):
    transition(site, datetime(2024, 3, 1, tzinfo=UTC), True)
    post(
        staff,
        [
            reading(datetime(2024, 3, 30, 22, 30, tzinfo=UTC), status="faulted"),  # 23:30 CET
            reading(datetime(2024, 3, 30, 23, 30, tzinfo=UTC), status="available"),  # 00:30
        ],
    )

    def days(from_, to, **params):
        response = staff_client.get(
            "/v1/sites/SITE001/availability",
            {"period": "day", "from": from_, "to": to, **params},
        )
        assert response.status_code == 200, response.json()
        return response.json()

    spring = days("2024-03-29T23:00:00Z", "2024-03-31T22:00:00Z")
    assert spring["timezone"] == "Europe/Berlin"
    assert [(p["start"], p["end"], p["observed_s"]) for p in spring["periods"]] == [
        ("2024-03-29T23:00:00Z", "2024-03-30T23:00:00Z", 86400),
        ("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z", 82800),
    ]
    assert [p["chargers"] for p in spring["periods"]] == [{"CHG1": 0.0}, {"CHG1": 100.0}]
    in_utc = days("2024-03-30T00:00:00Z", "2024-03-31T00:00:00Z", tz="UTC")
    assert [p["chargers"] for p in in_utc["periods"]] == [{"CHG1": 50.0}]
    autumn = days("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z")
    ((start, end, observed_s),) = [
        (p["start"], p["end"], p["observed_s"]) for p in autumn["periods"]
    ]
    assert (start, end, observed_s) == ("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z", 90000)


@pytest.mark.django_db
def test_availability_per_local_month_starts_at_the_local_first_of_the_month(site, staff_client):
    transition(site, datetime(2024, 1, 1, tzinfo=UTC), True)
    response = staff_client.get(
        "/v1/sites/SITE001/availability",
        {"period": "month", "from": "2024-02-29T23:00:00Z", "to": "2024-04-30T22:00:00Z"},
    )
    march, april = response.json()["periods"]
    assert (march["start"], march["end"]) == ("2024-02-29T23:00:00Z", "2024-03-31T22:00:00Z")
    assert march["observed_s"] == 31 * 86400 - 3600  # March loses an hour to summer time
    assert (april["start"], april["end"]) == ("2024-03-31T22:00:00Z", "2024-04-30T22:00:00Z")
    assert april["observed_s"] == 30 * 86400


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["energy", "availability"])
@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "europe/berlin", "../../etc/passwd", "CEST"])
def test_a_time_zone_that_is_not_an_iana_name_is_a_problem_naming_tz(site, staff_client, path, tz):
    response = staff_client.get(f"/v1/sites/SITE001/{path}", {"tz": tz})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["errors"]["tz"] == [
        "Must be an IANA time zone name, e.g. Europe/Berlin or UTC."
    ]


@pytest.mark.django_db
@override_settings(ENEXA_OFFLINE_AFTER_S=3600)
def test_a_site_whose_stored_zone_is_unknown_gets_utc_days_and_says_so(metered, staff_client):
    from enexa.registry.models import Site

    Site.objects.filter(pk=metered.pk).update(timezone="Nowhere/Atlantis")  # past validation
    response = energy(
        staff_client, period="day", **{"from": "2024-05-01T00:00:00Z"}, to="2024-06-01T00:00:00Z"
    )
    assert response.status_code == 200
    assert response.json()["timezone"] == "UTC"
    assert [p["start"] for p in response.json()["periods"]] == ["2024-05-06T00:00:00Z"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tz", "midnight"),
    [
        ("Asia/Kolkata", timedelta(hours=18, minutes=30)),
        ("Asia/Kathmandu", timedelta(hours=18, minutes=15)),
    ],
)
def test_days_in_a_zone_off_the_whole_hour_split_raw_readings_at_its_midnight(
    site, staff, staff_client, tz, midnight
):
    day = datetime(2024, 5, 6, tzinfo=UTC)
    post(
        staff,
        [
            reading(day + timedelta(hours=18), imp=0),
            reading(day + midnight - timedelta(minutes=5), imp=1),  # 23:55 local, 6 May
            reading(day + midnight + timedelta(minutes=5), imp=3),  # 00:05 local, 7 May
        ],
    )
    body = energy(
        staff_client,
        period="day",
        **{"from": "2024-05-01T00:00:00Z"},
        to="2024-05-10T00:00:00Z",
        tz=tz,
    ).json()
    assert body["timezone"] == tz
    assert [(p["start"], p["grid_import_kwh"]) for p in body["periods"]] == [
        (format_timestamp(day + midnight - timedelta(days=1)), 1.0),
        (format_timestamp(day + midnight), 2.0),
    ]


@pytest.mark.django_db
def test_a_rolled_up_hour_across_a_half_hour_zones_midnight_counts_in_the_day_it_starts(
    site, staff_client
):
    from enexa.telemetry.models import HourlyEnergy

    # 18:00-19:00 UTC is 23:30-00:30 in Kolkata: the roll-up cannot split it.
    HourlyEnergy.objects.create(
        site=site, hour=datetime(2024, 1, 10, 18, tzinfo=UTC), grid_import_kwh=4
    )
    HourlyEnergy.objects.create(
        site=site, hour=datetime(2024, 1, 10, 19, tzinfo=UTC), grid_import_kwh=6
    )
    response = energy(
        staff_client,
        period="day",
        **{"from": "2024-01-09T00:00:00Z"},
        to="2024-01-12T00:00:00Z",
        tz="Asia/Kolkata",
    )
    assert response.status_code == 200
    assert [(p["start"], p["grid_import_kwh"]) for p in response.json()["periods"]] == [
        ("2024-01-09T18:30:00Z", 4.0),
        ("2024-01-10T18:30:00Z", 6.0),
    ]


ZONES = sorted(timezone_names())


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether a clock in `zone` ever shows the naive wall time `wall`."""
    at = wall.replace(tzinfo=zone).astimezone(UTC)
    return at.astimezone(zone).replace(tzinfo=None) == wall


@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(datetime(1970, 1, 2), datetime(2100, 1, 1), timezones=st.just(UTC)),
    span=st.timedeltas(timedelta(seconds=1), timedelta(days=1500)),
    period=st.sampled_from(["hour", "day", "month"]),
)
@example(  # Samoa skipped 2011-12-30
    "Pacific/Apia", datetime(2011, 12, 28, 5, tzinfo=UTC), timedelta(days=5), "day"
)
@example(  # midnight skipped: the day begins at 01:00
    "America/Sao_Paulo", datetime(2018, 11, 2, tzinfo=UTC), timedelta(days=4), "day"
)
@example(  # 23:00-24:00 repeated before midnight
    "America/Santiago", datetime(2024, 4, 5, tzinfo=UTC), timedelta(days=3), "day"
)
@example("Europe/Berlin", datetime(2024, 3, 30, 12, tzinfo=UTC), timedelta(days=2), "hour")
@example("Asia/Kolkata", datetime(2024, 1, 31, 20, tzinfo=UTC), timedelta(days=70), "month")
@example("Australia/Lord_Howe", datetime(2024, 4, 6, tzinfo=UTC), timedelta(days=2), "day")
def test_the_periods_tile_the_range_and_each_begins_at_a_local_midnight(zone, start, span, period):
    from enexa.telemetry.periods import PeriodRange, boundaries, periods_of

    if period == "hour":
        span = min(span, timedelta(days=20))
    tz = ZoneInfo(zone)
    rng = PeriodRange(start, start + span, period, zone)
    cuts = boundaries(rng)
    clipped = list(periods_of(rng))
    # The clipped periods tile [start, end): no gap, no overlap, none empty.
    assert clipped[0][0] == rng.start and clipped[-1][1] == rng.end
    assert all(a[1] == b[0] for a, b in zip(clipped, clipped[1:], strict=False))
    assert all(begins < ends for begins, ends in clipped)
    assert cuts[0] <= rng.start and cuts[-1] >= rng.end and len(cuts) == len(clipped) + 1
    if period == "hour":
        assert all(cut.minute == cut.second == cut.microsecond == 0 for cut in cuts)
        assert all(b - a == timedelta(hours=1) for a, b in zip(cuts, cuts[1:], strict=False))
        return

    def key(at: datetime) -> tuple:
        local = at.astimezone(tz)
        return (local.year, local.month, local.day if period == "day" else 1)

    for cut in cuts:
        local = cut.astimezone(tz)
        # A new local day or month begins at the cut: its midnight (its first instant where
        # the clock skips midnight), on the first of the month for months.
        assert key(cut - timedelta(microseconds=1)) < key(cut)
        midnight = datetime(local.year, local.month, local.day)  # noqa: DTZ001 - a wall time
        assert local.time() == time(0) or not _exists(midnight, tz)
        assert period == "day" or local.day == 1 or not _exists(midnight.replace(day=1), tz)
    for a, b in zip(cuts, cuts[1:], strict=False):
        # Each period lies within one local day or month ...
        assert key(a) == key(b - timedelta(microseconds=1))
        # ... and the next begins the following one (a date no clock showed is skipped).
        if period == "month":
            year, month, _ = key(a)
            assert key(b)[:2] == (year + month // 12, month % 12 + 1)
        else:
            here, there = a.astimezone(tz).date(), b.astimezone(tz).date()
            for skipped in range(1, (there - here).days):
                wall = datetime.combine(here + timedelta(days=skipped), time())
                assert not any(_exists(wall + timedelta(hours=h), tz) for h in range(24))
