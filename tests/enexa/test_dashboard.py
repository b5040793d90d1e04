"""The operator dashboard under /app/: what each role sees and may do, what the fleet and a site
show, the chart data and the CSV export, the dispatch form, and bounded query counts."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from enexa.alerts.models import Alert
from enexa.dashboard import services, views
from enexa.dashboard.choices import CHART_RANGES, ChartRange
from enexa.dispatch.models import Command
from enexa.optimizer.models import Plan
from enexa.registry.choices import MemberRole
from enexa.telemetry.models import (
    Event,
    OutageReport,
    SiteStatus,
    SiteStatusTransition,
    StaleMinute,
)
from tests import factories
from tests.factories import (
    ChargerFactory,
    ControllerFactory,
    FirmwareReleaseFactory,
    MembershipFactory,
    SiteFactory,
    SiteStatusFactory,
    StaffFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
# enexa.alerts, where installed, adds one read to the fleet page (its unresolved alerts).
FLEET_QUERIES = 12


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def add_reading(site, at, *, soc=55.0, battery_kw=-20.0, grid_kw=120.0, chargers=None):
    """A reading stored as ingest stores it (its minute marked for the aggregates); by default
    with two chargers, one charging at 100 kW."""
    if chargers is None:
        chargers = (("CHG1", "charging", 100.0), ("CHG2", "available", 0.0))
    return factories.add_reading(
        site,
        at,
        battery_soc_pct=soc,
        battery_power_kw=battery_kw,
        grid_import_kw=grid_kw,
        grid_export_kw=0.0,
        chargers=chargers,
    )


def equip(site, *, alarm=True, now=None):
    """A site with everything the fleet shows: status, a reading with two chargers (one
    charging), an open alarm, a controller whose gateway has not applied its configuration."""
    now = now or timezone.now()
    SiteStatusFactory(site=site, mode="auto", last_seen_at=now)
    add_reading(site, now - timedelta(seconds=3))
    if alarm:
        Event.objects.create(
            site=site,
            event_id=f"alarm-{site.code}",
            timestamp=now - timedelta(minutes=1),
            received_at=now,
            kind="alarm",
            severity="warning",
            message="ChargePost 1 alarms raised",
            data={"chargepost": 1, "alarm_bits": 2, "raised": ["setpoint_clamped"], "cleared": []},
        )
    ControllerFactory(site=site, firmware_version="1.0.0")
    return site


@pytest.fixture
def viewer(site):
    user = UserFactory(username="viewer")
    MembershipFactory(user=user, site=site, role=MemberRole.VIEWER)
    return user


@pytest.fixture
def stranger(other_site):
    """An operator of another site only."""
    user = UserFactory(username="stranger")
    MembershipFactory(user=user, site=other_site)
    return user


# --- login --------------------------------------------------------------------------------


def test_an_anonymous_visitor_is_sent_to_the_login_page():
    response = Client().get("/app/")
    assert response.status_code == 302
    assert response["Location"] == "/app/login/?next=/app/"


def test_an_operator_logs_in_with_the_api_password_and_lands_on_the_fleet(operator, site):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/app/login/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/app/login/",
        {"username": "operator", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302 and response["Location"] == "/app/"
    assert site.code in client.get("/app/").content.decode()


def test_a_login_without_the_csrf_token_is_refused(operator):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/app/login/", {"username": "operator", "password": PASSWORD})
    assert response.status_code == 403


def test_a_wrong_password_shows_the_form_again_with_an_error(operator):
    response = Client().post("/app/login/", {"username": "operator", "password": "nope"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


def test_login_attempts_beyond_the_login_rate_limit_are_refused(operator, settings):
    settings.ENEXA_RATE_LIMITS = {**settings.ENEXA_RATE_LIMITS, "login": "3/min"}
    client = Client()
    codes = [
        client.post("/app/login/", {"username": "operator", "password": "nope"}).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    right = client.post("/app/login/", {"username": "operator", "password": PASSWORD})
    assert right.status_code == 429
    assert "Too many attempts" in right.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_ends_the_session(operator):
    client = logged_in(operator)
    assert client.post("/app/logout/").status_code == 302
    assert client.get("/app/").status_code == 302


def test_an_operator_changes_their_password(operator):
    client = logged_in(operator)
    response = client.post(
        "/app/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-much-longer-passphrase-42",
            "new_password2": "a-much-longer-passphrase-42",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/app/password/done/"
    operator.refresh_from_db()
    assert operator.check_password("a-much-longer-passphrase-42")


def test_an_expired_session_sends_an_htmx_poll_to_the_login_page():
    response = Client().get("/app/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/app/login/")


# --- who sees what ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "operator", "viewer"])
def test_each_role_sees_the_fleet_with_only_the_sites_it_may_see(
    role, site, other_site, operator, viewer
):
    user = {"staff": StaffFactory(), "operator": operator, "viewer": viewer}[role]
    page = logged_in(user).get("/app/").content.decode()
    assert 'data-site="SITE001"' in page
    assert ('data-site="SITE002"' in page) is (role == "staff")


@pytest.mark.parametrize("role", ["staff", "operator", "viewer"])
def test_each_role_opens_its_sites_page(role, site, operator, viewer):
    equip(site)
    user = {"staff": StaffFactory(), "operator": operator, "viewer": viewer}[role]
    client = logged_in(user)
    page = client.get(f"/app/sites/{site.code}/")
    assert page.status_code == 200
    assert client.get(f"/app/sites/{site.code}/live").status_code == 200
    assert client.get(f"/app/sites/{site.code}/chart?range=day").status_code == 200
    assert client.get(f"/app/sites/{site.code}/export.csv?range=hour").status_code == 200
    assert ('id="dispatch-form"' in page.content.decode()) is (role != "viewer")


def test_another_sites_operator_gets_404_on_every_site_url(site, stranger):
    client = logged_in(stranger)
    for suffix in ("", "live", "chart", "export.csv"):
        assert client.get(f"/app/sites/{site.code}/{suffix}").status_code == 404, suffix
    response = client.post(f"/app/sites/{site.code}/commands", {"command": "set_mode"})
    assert response.status_code == 404
    assert not Command.objects.exists()


def test_an_unknown_site_is_404_even_for_staff():
    assert logged_in(StaffFactory()).get("/app/sites/NOPE/").status_code == 404


def test_a_viewer_finds_no_dispatch_form_and_cannot_post_one(site, viewer):
    client = logged_in(viewer)
    page = client.get(f"/app/sites/{site.code}/").content.decode()
    assert "dispatch-form" not in page and "read-only-note" in page
    response = client.post(
        f"/app/sites/{site.code}/commands",
        {"command": "set_battery_power", "power_kw": "10", "confirm": "on"},
    )
    assert response.status_code == 403
    assert not Command.objects.exists()


# --- the fleet ----------------------------------------------------------------------------


def test_the_fleet_shows_each_sites_state_in_words(site, operator):
    equip(site)
    FirmwareReleaseFactory(version="1.1.0")
    page = logged_in(operator).get("/app/").content.decode()
    row = page.split('data-site="SITE001"')[1].split("</tr>")[0]
    for shown in (
        "Online",
        "auto",
        "55.0 %",
        "charging 20.0 kW",
        "120.0 / 400 kW",
        "1 of 2",
        "1 open",
        "setpoint_clamped",
        "drift",
        "outdated",
        "1.0.0 → 1.1.0",
    ):
        assert shown in row, shown


def test_a_silent_site_shows_offline_and_an_alarm_cleared_later_is_not_open(site, operator):
    now = timezone.now()
    equip(site, now=now - timedelta(hours=1))
    Event.objects.create(
        site=site,
        event_id="alarm-cleared",
        timestamp=now - timedelta(minutes=30),
        received_at=now,
        kind="alarm",
        data={"chargepost": 1, "alarm_bits": 0, "raised": [], "cleared": ["setpoint_clamped"]},
    )
    (row,) = services.fleet_rows(operator, now=now)
    assert row.online is False and row.alarms == []


def test_the_fleet_filters_by_text_and_status_and_sorts(staff):
    low, high = SiteFactory(code="SITEA"), SiteFactory(code="SITEB")
    SiteFactory(code="SITEC")  # never heard from
    now = timezone.now()
    for s, soc in ((low, 20.0), (high, 80.0)):
        SiteStatusFactory(site=s, last_seen_at=now)
        add_reading(s, now, soc=soc)
    client = logged_in(staff)

    def codes(query: str) -> list[str]:
        page = client.get(f"/app/?{query}").content.decode()
        return [part.split('"')[0] for part in page.split('data-site="')[1:]]

    assert codes("status=offline") == ["SITEC"]
    assert codes("status=online&sort=soc") == ["SITEA", "SITEB"]
    assert codes("sort=status") == ["SITEC", "SITEA", "SITEB"]
    assert codes("q=siteb") == ["SITEB"]
    assert codes("sort=nonsense") == ["SITEA", "SITEB", "SITEC"]


def test_the_fleets_poll_gets_only_the_table(site, operator):
    page = logged_in(operator).get("/app/?sort=soc", HTTP_HX_REQUEST="true").content.decode()
    assert page.lstrip().startswith('<div id="fleet"') and "<html" not in page
    assert 'hx-get="/app/?sort=soc"' in page


def test_htmx_restoring_the_fleet_from_history_gets_the_whole_page(site, operator):
    response = logged_in(operator).get(
        "/app/?sort=soc", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert "<html" in response.content.decode()


POLL = {"HTTP_HX_REQUEST": "true"}


def settled(site):
    """An equipped site online for two days (its "since" no longer moves each second)."""
    equip(site)
    SiteStatusTransition.objects.create(
        site=site, online=True, at=timezone.now() - timedelta(days=2), reason="status"
    )
    return site


def test_an_unchanged_fleet_answers_its_poll_304_without_a_body(site, operator):
    settled(site)
    client = logged_in(operator)
    first = client.get("/app/", **POLL)
    assert first.status_code == 200 and 'data-site="SITE001"' in first.content.decode()
    tag = first["ETag"]
    assert tag.startswith('"') and tag.endswith('"')
    assert "HX-Request" in first["Vary"]
    assert "no-cache" in first["Cache-Control"] and "private" in first["Cache-Control"]
    again = client.get("/app/", HTTP_IF_NONE_MATCH=tag, **POLL)
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == tag and "HX-Request" in again["Vary"]
    weak = client.get("/app/", HTTP_IF_NONE_MATCH=f"W/{tag}", **POLL)  # via a compressing proxy
    assert weak.status_code == 304


def test_the_page_hands_its_table_the_etag_for_its_first_poll(site, operator):
    settled(site)
    client = logged_in(operator)
    page = client.get("/app/")
    tag = client.get("/app/", **POLL)["ETag"]
    assert "ETag" not in page  # the whole page (with its CSRF token) is never a 304
    header = json.dumps({"If-None-Match": tag}).replace('"', "&quot;")
    assert f'hx-headers="{header}"' in page.content.decode()
    assert client.get("/app/", HTTP_IF_NONE_MATCH=tag).status_code == 200
    restore = client.get(
        "/app/", HTTP_IF_NONE_MATCH=tag, HTTP_HX_HISTORY_RESTORE_REQUEST="true", **POLL
    )
    assert restore.status_code == 200 and "<html" in restore.content.decode()


def test_a_change_the_table_shows_answers_the_poll_with_the_new_table(site, operator):
    settled(site)
    client = logged_in(operator)
    tag = client.get("/app/", **POLL)["ETag"]
    add_reading(site, timezone.now(), soc=61.5)
    changed = client.get("/app/", HTTP_IF_NONE_MATCH=tag, **POLL)
    assert changed.status_code == 200 and "61.5 %" in changed.content.decode()
    assert changed["ETag"] != tag


def test_a_change_the_table_does_not_show_still_answers_304(site, operator):
    settled(site)
    client = logged_in(operator)
    tag = client.get("/app/", **POLL)["ETag"]
    SiteStatus.objects.filter(site=site).update(last_seen_at=timezone.now())  # a status report
    assert client.get("/app/", HTTP_IF_NONE_MATCH=tag, **POLL).status_code == 304


def test_each_filter_has_its_own_etag(site, other_site, staff):
    settled(site)
    client = logged_in(staff)
    tag = client.get("/app/", **POLL)["ETag"]
    filtered = client.get("/app/?q=SITE001", HTTP_IF_NONE_MATCH=tag, **POLL)
    assert filtered.status_code == 200 and filtered["ETag"] != tag


def test_the_etag_follows_the_since_column_as_shown_not_the_clock(site, operator):
    settled(site)
    now = timezone.now()
    rows = services.fleet_rows(operator, now=now)

    def digest(at):
        return views.fleet_digest(rows, query="", now=at)

    assert digest(now) == digest(now + timedelta(seconds=5))  # still "(2 d)"
    assert digest(now) != digest(now + timedelta(days=1))  # "(3 d)"
    assert digest(now) != views.fleet_digest(rows, query="sort=soc", now=now)


def test_the_fleets_phone_labels_are_the_words_of_its_header():
    from django.contrib.staticfiles import finders

    css = open(finders.find("dashboard/dashboard.css")).read()
    labels = re.findall(r'table\.fleet td:nth-child\((\d+)\)::before \{ content: "([^"]+): "', css)
    template = (
        Path(views.__file__).parent / "templates" / "dashboard" / "_fleet_table.html"
    ).read_text()
    header = re.findall(r"<th>([^<]+)</th>", template)
    assert [int(n) for n, _ in labels] == list(range(1, len(header) + 1))
    assert [word for _, word in labels] == header
    row = template.split("<tr data-site")[1].split("</tr>")[0]
    assert row.count("<td>") == len(header)  # no class nor data-label on the fleet's cells


def _fleet_world(count: int):
    staff = StaffFactory()
    FirmwareReleaseFactory(version="1.1.0")
    for _ in range(count):
        equip(SiteFactory())
    return staff


@pytest.mark.parametrize("count", [1, 50])
def test_the_fleet_reads_a_fixed_number_of_queries_for_1_or_50_sites(
    count, django_assert_max_num_queries
):
    client = logged_in(_fleet_world(count))
    with django_assert_max_num_queries(FLEET_QUERIES):
        page = client.get("/app/").content.decode()
    assert page.count("data-site=") == count
    assert page.count("1 open") == count


def test_an_operators_fleet_also_reads_a_fixed_number_of_queries(django_assert_max_num_queries):
    operator = UserFactory()
    for _ in range(30):
        MembershipFactory(user=operator, site=equip(SiteFactory()))
    client = logged_in(operator)
    with django_assert_max_num_queries(FLEET_QUERIES + 1):  # + the memberships
        assert client.get("/app/").content.decode().count("data-site=") == 30


def test_the_site_page_reads_a_fixed_number_of_queries(
    site, operator, django_assert_max_num_queries
):
    equip(site)
    for i in range(30):
        Event.objects.create(
            site=site,
            event_id=f"e{i}",
            timestamp=timezone.now(),
            received_at=timezone.now(),
            kind="log",
        )
        OutageReport.objects.create(
            site=site, silent_since=timezone.now(), offline_at=timezone.now(), interval_s=5
        )
    client = logged_in(operator)
    with django_assert_max_num_queries(19):  # the plan in force and the chargers included
        assert client.get(f"/app/sites/{site.code}/").status_code == 200


# --- the site page ------------------------------------------------------------------------


def test_the_site_page_shows_power_flow_versions_events_and_outages(site, operator):
    equip(site)
    now = timezone.now()
    OutageReport.objects.create(
        site=site,
        silent_since=now - timedelta(minutes=10),
        offline_at=now - timedelta(minutes=8),
        online_at=now - timedelta(minutes=2),
        interval_s=5,
        readings_expected=120,
        readings_received=110,
        readings_backfilled=90,
        gaps=[{"from": "10:00:00", "to": "10:00:50", "missing": 10}],
        reconciled_at=now,
    )
    page = logged_in(operator).get(f"/app/sites/{site.code}/").content.decode()
    for shown in (
        "importing 120.0 kW",
        "charging 20.0 kW",
        'data-soc="55.0"',
        "CHG1: charging, 100.0 kW",
        "1 open alarm",
        "110 of 120 (90 backfilled)",
        "reconciled",
        "v1",
        "drift",
        "ChargePost 1 alarms raised",
        "/app/sites/SITE001/export.csv?range=hour",
        "vendor/uplot/uPlot.iife.min.js",
    ):
        assert shown in page, shown


def test_unresolved_alerts_show_on_the_fleet_and_the_site_page(site, other_site, operator):
    now = timezone.now()
    for code, where, state in (
        ("ALR1", site, "open"),
        ("ALR2", site, "acknowledged"),
        ("ALR3", site, "resolved"),
        ("ALR4", other_site, "open"),
    ):
        Alert.objects.create(
            code=code,
            site=where,
            rule=f"rule_{code}",
            severity="warning",
            state=state,
            opened_at=now,
        )
    client = logged_in(operator)
    row = client.get("/app/").content.decode().split('data-site="SITE001"')[1].split("</tr>")[0]
    assert "2 alerts" in row
    page = client.get(f"/app/sites/{site.code}/").content.decode()
    assert 'data-alert="ALR1"' in page and 'data-alert="ALR2"' in page
    assert 'data-alert="ALR3"' not in page and 'data-alert="ALR4"' not in page


def test_no_plan_block_for_a_site_that_follows_no_plan(site, operator):
    page = logged_in(operator).get(f"/app/sites/{site.code}/").content.decode()
    assert 'id="plan"' not in page
    assert "plan" not in logged_in(operator).get(f"/app/sites/{site.code}/chart").json()


def test_the_plan_in_force_is_drawn_with_its_cost_and_an_undispatched_one_is_not(site, operator):
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    slots = [
        {
            "start": (start + timedelta(minutes=15 * i)).isoformat(),
            "end": (start + timedelta(minutes=15 * (i + 1))).isoformat(),
            "battery_power_kw": power,
            "soc_pct": soc,
            "grid_import_kw": grid,
        }
        for i, (power, soc, grid) in enumerate(((10.0, 50.0, 90.0), (-5.0, 52.0, 95.0)))
    ]

    def plan(version: int, dispatched: bool) -> Plan:
        return Plan.objects.create(
            code=f"plan_{version}", site=site, version=version, created_at=start,
            created_by="test", reason="manual", status="optimal", slot_minutes=15,
            start_at=start, end_at=start + timedelta(minutes=30), currency="EUR", slots=slots,
            cost_total=12.5, cost_baseline=20.0, solve_ms=3.0, dispatched=dispatched,
            inputs_digest="0" * 64,
        )  # fmt: skip

    client = logged_in(operator)
    plan(1, dispatched=False)
    assert 'id="plan"' not in client.get(f"/app/sites/{site.code}/").content.decode()
    plan(2, dispatched=True)
    page = client.get(f"/app/sites/{site.code}/").content.decode()
    assert 'data-plan="plan_2"' in page and "cost 12.50 EUR against 20.00" in page
    body = client.get(f"/app/sites/{site.code}/chart").json()
    assert body["plan"]["battery_power_kw"] == [10.0, -5.0]
    assert body["plan"]["time"] == [int(start.timestamp()), int(start.timestamp()) + 900]


def test_the_chart_data_averages_each_bucket_in_the_database(site, operator):
    now = timezone.now()
    day_bucket = CHART_RANGES[ChartRange.DAY][1]
    base = datetime.fromtimestamp((int(now.timestamp()) // day_bucket - 10) * day_bucket, tz=UTC)
    add_reading(site, base + timedelta(seconds=5), soc=50.0, grid_kw=100.0)
    add_reading(site, base + timedelta(seconds=35), soc=52.0, grid_kw=140.0)
    add_reading(site, base + timedelta(seconds=65), soc=60.0, grid_kw=80.0)
    add_reading(site, now - timedelta(days=2), soc=1.0)  # outside the day
    body = logged_in(operator).get(f"/app/sites/{site.code}/chart?range=day").json()
    assert body["time"] == [int(base.timestamp()), int(base.timestamp()) + 60]
    assert body["battery_soc_pct"] == [51.0, 60.0]
    assert body["grid_import_kw"] == [120.0, 80.0]
    assert body["grid_import_kw_max"] == [140.0, 80.0]
    assert body["grid_limit_kw"] == 400.0


def test_no_chart_range_asks_for_more_than_2000_points():
    for span_s, bucket_s in CHART_RANGES.values():
        assert span_s / bucket_s <= services.MAX_CHART_POINTS


def test_a_week_of_readings_every_5_s_comes_back_as_15_minute_points(site, operator):
    now = timezone.now()
    factories.add_readings(
        site,
        (
            (now - timedelta(seconds=5 * i), {"battery_soc_pct": 50.0})
            for i in range(1, 7 * 24 * 720, 40)  # every 200 s over the week
        ),
    )
    body = logged_in(operator).get(f"/app/sites/{site.code}/chart?range=week").json()
    assert body["bucket_s"] == 900
    assert 670 <= len(body["time"]) <= 673
    assert set(body["battery_soc_pct"]) == {50.0}


def test_a_reading_the_worker_has_not_aggregated_yet_is_already_in_the_chart(site, operator):
    now = timezone.now()
    add_reading(site, now - timedelta(minutes=3), soc=40.0)
    client = logged_in(operator)
    assert client.get(f"/app/sites/{site.code}/chart?range=hour").json()["battery_soc_pct"] == [
        40.0
    ]
    # Stored just now: its minute waits for the worker's refresh, which has not run.
    add_reading(site, now - timedelta(seconds=2), soc=70.0)
    assert StaleMinute.objects.filter(site=site).exists()
    body = client.get(f"/app/sites/{site.code}/chart?range=hour").json()
    assert body["battery_soc_pct"] == [40.0, 70.0]
    assert not StaleMinute.objects.filter(site=site).exists()


def test_the_chart_reads_a_fixed_number_of_queries_however_many_readings(
    site, operator, django_assert_max_num_queries
):
    now = timezone.now()
    factories.add_readings(
        site,
        ((now - timedelta(seconds=5 * i), {"grid_import_kw": 100.0 + i}) for i in range(1, 2000)),
    )
    client = logged_in(operator)
    # Session, user, memberships, site, stale minutes?, the buckets, the plan in force; the
    # first time also the refresh of the minutes marked (savepoint, on PostgreSQL its lock,
    # take them, three upserts).
    with django_assert_max_num_queries(14):
        body = client.get(f"/app/sites/{site.code}/chart?range=day").json()
    assert sum(1 for v in body["grid_import_kw"] if v is not None) >= 166
    with django_assert_max_num_queries(7):  # nothing stale any more
        client.get(f"/app/sites/{site.code}/chart?range=week")


def test_an_unknown_chart_range_is_a_problem_naming_the_field(site, operator):
    response = logged_in(operator).get(f"/app/sites/{site.code}/chart?range=year")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "range" in response.json()["errors"]


def test_the_csv_export_has_the_readings_of_the_range(site, operator):
    add_reading(site, timezone.now() - timedelta(minutes=5), soc=42.5)
    response = logged_in(operator).get(f"/app/sites/{site.code}/export.csv?range=hour")
    assert response["Content-Type"] == "text/csv"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("timestamp,message_id,backfilled,battery_soc_pct")
    assert len(lines) == 2 and ",42.5," in lines[1]


# --- dispatch -----------------------------------------------------------------------------


def test_an_operator_dispatches_from_the_form_and_the_worker_is_asked_to_deliver(
    site, operator, enqueued
):
    client = logged_in(operator)
    with enqueued.committing(execute=True):
        response = client.post(
            f"/app/sites/{site.code}/commands",
            {"command": "set_battery_power", "power_kw": "-40", "confirm": "on"},
            HTTP_HX_REQUEST="true",
        )
    assert response.status_code == 200
    assert "commandSent" in json.loads(response["HX-Trigger"])
    command = Command.objects.get()
    assert (command.command, command.params, command.created_by) == (
        "set_battery_power",
        {"power_kw": -40.0},
        "user:operator",
    )
    assert [(task.name, args) for task, args, _ in enqueued] == [
        ("enexa.dispatch.tasks.deliver_command", (command.command_id,))
    ]
    assert command.command_id[:8] in response.content.decode()


def test_a_command_sent_from_the_dashboard_is_in_the_audit_log_and_its_polls_are_not(
    site, operator, enqueued
):
    from enexa.audit.models import AuditEntry

    client = logged_in(operator)
    client.get(f"/app/sites/{site.code}/live")
    client.post(
        f"/app/sites/{site.code}/commands",
        {"command": "set_mode", "mode": "safe", "confirm": "on"},
    )
    (entry,) = AuditEntry.objects.all()
    assert (entry.principal, entry.method, entry.path) == (
        "user:operator",
        "POST",
        f"/app/sites/{site.code}/commands",
    )
    assert entry.status_code == 302


def test_without_javascript_a_sent_command_redirects_to_the_site_page(site, operator, enqueued):
    response = logged_in(operator).post(
        f"/app/sites/{site.code}/commands",
        {"command": "set_mode", "mode": "safe", "confirm": "on"},
    )
    assert response.status_code == 302 and response["Location"] == f"/app/sites/{site.code}/"
    assert Command.objects.get().params == {"mode": "safe"}


def test_a_command_is_not_sent_without_confirmation(site, operator):
    response = logged_in(operator).post(
        f"/app/sites/{site.code}/commands",
        {"command": "set_battery_power", "power_kw": "10"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    assert "Tick to confirm" in response.content.decode()
    assert not Command.objects.exists()


def test_a_power_beyond_the_limit_shows_the_apis_error_on_its_field(site, operator):
    api = UserFactory(username="api-twin")
    MembershipFactory(user=api, site=site)
    from tests.conftest import jwt_client

    api_error = jwt_client(api).post(
        f"/v1/sites/{site.code}/commands",
        {"command": "set_battery_power", "params": {"power_kw": 20000}},
        format="json",
    )
    reason = api_error.json()["errors"]["params.power_kw"][0]
    response = logged_in(operator).post(
        f"/app/sites/{site.code}/commands",
        {"command": "set_battery_power", "power_kw": "20000", "confirm": "on"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    field = response.content.decode().split('data-field="power_kw"')[1].split("</div>")[0]
    assert reason in field
    assert not Command.objects.exists()


def test_a_missing_parameter_is_named_as_the_api_names_it(site, operator):
    response = logged_in(operator).post(
        f"/app/sites/{site.code}/commands",
        {"command": "set_charger_power_limit", "limit_kw": "50", "confirm": "on"},
    )
    assert response.status_code == 422
    field = response.content.decode().split('data-field="charger_id"')[1].split("</div>")[0]
    assert "This field is required." in field


def charger_options(page: str) -> list[str]:
    """The values the dispatch form's charger select offers."""
    select = page.split('<select name="charger_id"')[1].split("</select>")[0]
    return re.findall(r'<option value="([^"]*)"', select)


def test_the_dispatch_form_offers_the_chargers_of_the_sites_configuration(
    site, other_site, operator
):
    ChargerFactory(site=site, code="CHG7", max_power_kw=150.0)
    ControllerFactory(site=site)
    ChargerFactory(site=site, code="CHG3")  # after the controller: its configuration follows
    ChargerFactory(site=other_site, code="CHG9")
    page = logged_in(operator).get(f"/app/sites/{site.code}/").content.decode()
    assert charger_options(page) == ["", "CHG3", "CHG7"]
    assert ">CHG7 (up to 150 kW)</option>" in page


def test_a_site_without_a_configuration_yet_offers_the_registrys_chargers(site, operator):
    ChargerFactory(site=site, code="CHG5")
    page = logged_in(operator).get(f"/app/sites/{site.code}/").content.decode()
    assert charger_options(page) == ["", "CHG5"]


def test_a_site_without_chargers_says_so_in_the_select(site, operator):
    page = logged_in(operator).get(f"/app/sites/{site.code}/").content.decode()
    assert charger_options(page) == [""] and "no charger configured" in page


@pytest.mark.parametrize("forged", ["CHG9", "CHG7 ", "chg7", "x" * 40])
def test_a_charger_id_not_among_the_sites_is_the_forms_field_error(
    site, other_site, operator, forged
):
    ChargerFactory(site=site, code="CHG7")
    ChargerFactory(site=other_site, code="CHG9")
    ControllerFactory(site=site)
    response = logged_in(operator).post(
        f"/app/sites/{site.code}/commands",
        {"command": "set_charger_power_limit", "charger_id": forged, "limit_kw": "50",
         "confirm": "on"},
        HTTP_HX_REQUEST="true",
    )  # fmt: skip
    assert response.status_code == 422
    field = response.content.decode().split('data-field="charger_id"')[1].split("</div>")[0]
    assert "Select a valid choice" in field
    assert not Command.objects.exists()


def test_an_operator_limits_a_charger_chosen_from_the_select(site, operator, enqueued):
    ChargerFactory(site=site, code="CHG7", max_power_kw=150.0)
    ControllerFactory(site=site)
    response = logged_in(operator).post(
        f"/app/sites/{site.code}/commands",
        {"command": "set_charger_power_limit", "charger_id": "CHG7", "limit_kw": "50",
         "confirm": "on"},
        HTTP_HX_REQUEST="true",
    )  # fmt: skip
    assert response.status_code == 200
    assert Command.objects.get().params == {"charger_id": "CHG7", "limit_kw": 50.0}
    assert charger_options(response.content.decode()) == ["", "CHG7"]  # the fresh form


def test_the_live_panel_shows_each_commands_status(site, operator):
    Command.objects.create(
        command_id="c-applied",
        site=site,
        command="set_battery_power",
        params={"power_kw": 30},
        issued_at=timezone.now(),
        status="applied",
        created_by="user:operator",
    )
    page = logged_in(operator).get(f"/app/sites/{site.code}/live").content.decode()
    assert 'data-command-id="c-applied"' in page and 'data-status="applied"' in page
    assert "<html" not in page


# --- error pages --------------------------------------------------------------------------

# Django's own bare pages, which no /app/ answer may be.
DJANGO_404 = "The requested resource was not found on this server."
DJANGO_403 = "<h1>403 Forbidden</h1>"
DJANGO_CSRF = "CSRF verification failed"


def assert_dashboard_error_page(response, status: int, word: str) -> str:
    """The dashboard's layout (its header, the way back to the fleet), the status in words,
    nothing of Django's bare pages; returns the page."""
    page = response.content.decode()
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert 'class="topbar"' in page and 'href="/app/">Back to the fleet' in page
    assert f"<h1>{word} " in page and f'data-error="{status}"' in page
    for bare in (DJANGO_404, DJANGO_403, DJANGO_CSRF, "Traceback"):
        assert bare not in page
    return page


def assert_dashboard_error_fragment(response, status: int, word: str) -> str:
    """For htmx: the small fragment the page shows in its notice area, no layout."""
    page = response.content.decode()
    assert response.status_code == status
    assert "<html" not in page
    assert 'class="topbar"' not in page and 'role="alert"' in page
    assert f"<strong>{word}</strong> ({status})" in page and 'href="/app/"' in page
    return page


@pytest.mark.parametrize("path", ["/app/nowhere/", "/app/sites/SITE001/nothing-here"])
def test_a_dashboard_page_that_does_not_exist_is_a_404_in_the_dashboards_layout(
    site, operator, path
):
    page = assert_dashboard_error_page(logged_in(operator).get(path), 404, "Not found")
    assert "nowhere" not in page and "nothing-here" not in page  # no echo of the request
    assert "operator" in page  # the header of a logged-in operator


def test_an_anonymous_visitor_to_a_missing_dashboard_page_gets_the_404_page_too():
    page = assert_dashboard_error_page(Client().get("/app/nowhere/"), 404, "Not found")
    assert "Log out" not in page


def test_another_operators_site_is_the_dashboards_404_naming_nothing_of_it(site, stranger):
    client = logged_in(stranger)
    page = assert_dashboard_error_page(client.get(f"/app/sites/{site.code}/"), 404, "Not found")
    assert site.code not in page and site.name not in page
    fragment = client.get(f"/app/sites/{site.code}/live", HTTP_HX_REQUEST="true")
    assert site.code not in assert_dashboard_error_fragment(fragment, 404, "Not found")


def test_a_viewers_dispatch_is_the_dashboards_403_page_and_fragment(site, viewer):
    client = logged_in(viewer)
    data = {"command": "set_mode", "mode": "safe", "confirm": "on"}
    url = f"/app/sites/{site.code}/commands"
    page = assert_dashboard_error_page(client.post(url, data), 403, "Forbidden")
    assert "Only staff and the site&#x27;s operators" in page
    assert_dashboard_error_fragment(
        client.post(url, data, HTTP_HX_REQUEST="true"), 403, "Forbidden"
    )
    assert not Command.objects.exists()


def test_a_form_posted_with_a_stale_csrf_token_is_the_dashboards_403(site, operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    url = f"/app/sites/{site.code}/commands"
    data = {"command": "set_mode", "mode": "safe", "confirm": "on", "csrfmiddlewaretoken": "x"}
    page = assert_dashboard_error_page(client.post(url, data), 403, "Forbidden")
    assert "Reload the page" in page
    assert_dashboard_error_fragment(
        client.post(url, data, HTTP_HX_REQUEST="true"), 403, "Forbidden"
    )
    login = Client(enforce_csrf_checks=True).post("/app/login/", {"username": "operator"})
    assert_dashboard_error_page(login, 403, "Forbidden")
    assert not Command.objects.exists()


# (method, path, Allow as the view sets it): require_GET, require_POST, a class-based view.
WRONG_METHODS = [
    ("delete", "/app/", "GET"),
    ("post", "/app/sites/SITE001/", "GET"),
    ("put", "/app/sites/SITE001/chart", "GET"),
    ("get", "/app/sites/SITE001/commands", "POST"),
    ("get", "/app/logout/", "POST, OPTIONS"),
]


@pytest.mark.parametrize(("method", "path", "allow"), WRONG_METHODS)
def test_a_wrong_method_is_the_dashboards_405_page_and_fragment_naming_the_methods(
    site, operator, method, path, allow
):
    client = logged_in(operator)
    response = getattr(client, method)(path)
    page = assert_dashboard_error_page(response, 405, "Method not allowed")
    assert response["Allow"] == allow  # as Django set it
    accepted = " or ".join(allow.split(", "))
    assert f"This page accepts only {accepted}." in page
    assert "operator" in page  # the header of a logged-in operator
    # What the middleware outside it adds reaches the page it made: the CSRF cookie of the
    # page's token (its logout form works), X-Frame-Options.
    assert "csrftoken" in response.cookies and response["X-Frame-Options"] == "DENY"
    assert "HX-Request" in response["Vary"]  # the page and the fragment share the URL
    fragment = getattr(client, method)(path, HTTP_HX_REQUEST="true")
    assert f"accepts only {accepted}." in assert_dashboard_error_fragment(
        fragment, 405, "Method not allowed"
    )
    assert fragment["Allow"] == allow


def test_an_anonymous_wrong_method_gets_the_405_page_without_echoing_the_request():
    response = Client().generic("FROBNICATE", "/app/?secret=echo")
    page = assert_dashboard_error_page(response, 405, "Method not allowed")
    assert response["Allow"] == "GET" and "This page accepts only GET." in page
    assert "FROBNICATE" not in page and "echo" not in page and "Log out" not in page


def test_a_wrong_method_without_a_csrf_token_is_refused_as_a_stale_form_first(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    page = assert_dashboard_error_page(client.delete("/app/"), 403, "Forbidden")
    assert "Reload the page" in page
    # OPTIONS needs no token (Django checks none on it): the view refuses its method.
    assert_dashboard_error_page(client.options("/app/"), 405, "Method not allowed")


@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(method=st.from_regex(r"[A-Z][A-Z-]{0,11}", fullmatch=True).filter(lambda m: m != "GET"))
def test_no_method_makes_a_dashboard_page_fail(site, operator, method):
    response = logged_in(operator).generic(method, f"/app/sites/{site.code}/")
    assert response.status_code == 405 and response["Allow"] == "GET"


def test_a_wrong_method_on_the_api_and_the_admin_is_answered_as_before(staff):
    api = Client().delete("/v1/health")
    assert api.status_code == 405 and "GET" in api["Allow"]
    assert api["Content-Type"] == "application/problem+json"
    assert api.json()["title"] == "Method Not Allowed"
    admin = logged_in(staff).get("/admin/logout/")  # Django's empty 405
    assert admin.status_code == 405 and admin["Allow"] == "POST, OPTIONS"
    assert admin.content == b""


def test_the_api_keeps_its_problem_details_and_the_admin_its_own_pages(site, staff):
    missing = Client().get("/v1/nowhere")
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/problem+json"
    assert missing.json()["type"].endswith("/not_found")
    admin_missing = logged_in(staff).get("/admin/nowhere/")
    assert admin_missing.status_code == 404
    assert 'class="topbar"' not in admin_missing.content.decode()
    admin_login = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "x"})
    assert admin_login.status_code == 403 and DJANGO_CSRF in admin_login.content.decode()


def test_every_page_has_the_notice_area_htmx_puts_an_error_into(site, operator):
    client = logged_in(operator)
    for path in ("/app/", f"/app/sites/{site.code}/", "/app/password/", "/app/nowhere/"):
        assert '<div id="notice"' in client.get(path).content.decode(), path


# --- assets -------------------------------------------------------------------------------


def test_the_pages_load_no_asset_from_another_host(site, operator):
    client = logged_in(operator)
    for path in ("/app/", f"/app/sites/{site.code}/", "/app/login/"):
        page = client.get(path).content.decode()
        assert 'src="http' not in page and 'href="http' not in page, path
        assert "//cdn" not in page


def test_the_vendored_libraries_are_served_as_static_files():
    from django.contrib.staticfiles import finders

    for name in (
        "dashboard/vendor/uplot/uPlot.iife.min.js",
        "dashboard/vendor/uplot/uPlot.min.css",
        "dashboard/vendor/htmx/htmx.min.js",
        "dashboard/dashboard.css",
        "dashboard/dashboard.js",
    ):
        assert finders.find(name), name


def test_the_fleet_url_is_where_the_contract_says():
    assert reverse("dashboard:fleet") == "/app/"
    assert reverse("dashboard:site", args=["SITE001"]) == "/app/sites/SITE001/"


# --- the access matrix of /app/, built from the URL configuration -------------------------


def dashboard_routes() -> list[str]:
    """Every /app/ route, `<str:site_id>` filled with SITE001."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern)

    return [
        "/" + route.replace("<str:site_id>", "SITE001")
        for route in walk(get_resolver().url_patterns, "")
        if route.startswith("app/")
    ]


OPEN_ROUTES = {"/app/login/", "/app/logout/"}


def test_the_matrix_finds_the_dashboards_routes():
    routes = dashboard_routes()
    assert {"/app/", "/app/sites/SITE001/", "/app/sites/SITE001/commands"} <= set(routes)


def test_every_dashboard_route_sends_an_anonymous_visitor_to_the_login(site):
    for route in set(dashboard_routes()) - OPEN_ROUTES:
        for method in ("get", "post"):
            response = getattr(Client(), method)(route)
            assert response.status_code in (302, 405), (method, route)
            if response.status_code == 302:
                assert response["Location"].startswith("/app/login/"), (method, route)


def test_every_site_route_is_404_for_another_sites_operator(site, stranger):
    client = logged_in(stranger)
    for route in (r for r in dashboard_routes() if "/sites/" in r):
        for method in ("get", "post"):
            response = getattr(client, method)(route, {"command": "set_mode", "confirm": "on"})
            assert response.status_code in (404, 405), (method, route)
            assert b"SITE001" not in response.content, (method, route)
    assert not Command.objects.exists()


def test_no_site_route_lets_a_viewer_change_anything(site, viewer):
    client = logged_in(viewer)
    for route in (r for r in dashboard_routes() if "/sites/" in r):
        response = client.post(route, {"command": "set_mode", "mode": "safe", "confirm": "on"})
        assert response.status_code in (403, 405), route
    assert not Command.objects.exists()


# --- any query string ---------------------------------------------------------------------

ANY_TEXT = st.text(max_size=40)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=ANY_TEXT, status=ANY_TEXT, sort=ANY_TEXT, chart_range=ANY_TEXT)
def test_no_query_string_makes_a_dashboard_page_fail(site, operator, q, status, sort, chart_range):
    client = logged_in(operator)
    fleet = client.get("/app/", {"q": q, "status": status, "sort": sort})
    assert fleet.status_code == 200
    chart = client.get(f"/app/sites/{site.code}/chart", {"range": chart_range})
    assert chart.status_code == (200 if chart_range in ChartRange.values else 400)
    export = client.get(f"/app/sites/{site.code}/export.csv", {"range": chart_range})
    assert export.status_code == (200 if chart_range in ChartRange.values else 400)
