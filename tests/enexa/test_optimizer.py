"""Enexa's optimizer as a Django app: prices in and out, the problem built from the registry,
configuration, telemetry and prices, plans stored, dispatched and read back, and re-planning
on prices, configuration, SOC drift and reconnection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from enexa.configs.services import update_site_config
from enexa.dispatch.choices import CommandStatus
from enexa.dispatch.models import Command
from enexa.optimizer import services, tasks
from enexa.optimizer.choices import PlanReason
from enexa.optimizer.models import Plan, PriceSlot
from enexa.registry.choices import MemberRole
from enexa.telemetry.models import OutageReport
from enexa.telemetry.outages import recover_site
from shared.fields import format_timestamp
from tests import factories
from tests.conftest import jwt_client
from tests.factories import ControllerFactory, MembershipFactory, UserFactory
from tests.hostile import CALENDAR_EDGES

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)  # a Thursday, midnight UTC


def hourly_prices(start: datetime, hours: int, cheap=(0, 6), price=0.30, cheap_price=0.10):
    """`PUT .../prices` body: hourly import prices, cheap in the `cheap` hours (UTC)."""
    slots = []
    for h in range(hours):
        at = start + timedelta(hours=h)
        buy = cheap_price if cheap[0] <= at.hour < cheap[1] else price
        slots.append(
            {
                "start": format_timestamp(at),
                "end": format_timestamp(at + timedelta(hours=1)),
                "import_price": buy,
                "export_price": 0.05,
            }
        )
    return {"currency": "EUR", "slots": slots}


def add_reading(site, at: datetime, *, soc=50.0, grid_import=40.0, export=0.0, battery=0.0):
    """A reading stored as ingest stores it (its minute marked for the aggregates)."""
    return factories.add_reading(
        site,
        at,
        battery_soc_pct=soc,
        battery_power_kw=battery,
        grid_import_kw=grid_import,
        grid_export_kw=export,
    )


@pytest.fixture
def priced_site(equipped_site):
    """SITE001 with two days of hourly prices (cheap 00-06 UTC) from T0 and from an hour ago,
    and a reading."""
    services.replace_prices(equipped_site, hourly_prices(T0, 48))
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    services.replace_prices(equipped_site, hourly_prices(hour - timedelta(hours=1), 48))
    add_reading(equipped_site, T0 - timedelta(minutes=1), soc=40.0)
    return equipped_site


def plan_now(site, **kwargs):
    kwargs.setdefault("now", T0 + timedelta(minutes=5))
    return services.create_plan(site, **kwargs)


# --- prices -------------------------------------------------------------------------------------


def test_putting_prices_replaces_only_the_range_they_cover(equipped_site, staff_client):
    staff_client.put("/v1/sites/SITE001/prices", hourly_prices(T0, 4), format="json")
    newer = hourly_prices(T0 + timedelta(hours=2), 1, price=0.99, cheap_price=0.99)
    response = staff_client.put("/v1/sites/SITE001/prices", newer, format="json")
    assert response.status_code == 200, response.json()
    back = staff_client.get(
        "/v1/sites/SITE001/prices",
        {"from": format_timestamp(T0), "to": format_timestamp(T0 + timedelta(hours=4))},
    ).json()
    assert back["currency"] == "EUR"
    assert [s["import_price"] for s in back["slots"]] == [0.10, 0.10, 0.99, 0.10]


def test_bad_prices_are_refused_with_a_problem_naming_each_field(equipped_site, staff_client):
    body = hourly_prices(T0, 2)
    body["currency"] = "euro"
    body["slots"][0]["end"] = body["slots"][0]["start"]
    body["slots"][1]["import_price"] = "cheap"
    response = staff_client.put("/v1/sites/SITE001/prices", body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert set(errors) == {"currency", "slots.0.end", "slots.1.import_price"}
    assert not PriceSlot.objects.exists()


def test_overlapping_price_slots_are_refused(equipped_site, staff_client):
    body = hourly_prices(T0, 2)
    body["slots"][1]["start"] = format_timestamp(T0 + timedelta(minutes=30))
    response = staff_client.put("/v1/sites/SITE001/prices", body, format="json")
    assert response.status_code == 400
    assert "slots" in response.json()["errors"]


@pytest.mark.parametrize("stamp", CALENDAR_EDGES)
def test_prices_or_a_range_at_the_calendars_limits_are_field_errors(
    equipped_site, staff_client, stamp
):
    body = hourly_prices(T0, 1)
    body["slots"][0]["start"] = stamp
    response = staff_client.put("/v1/sites/SITE001/prices", body, format="json")
    assert "slots.0.start" in response.json()["errors"]
    for name in ("from", "to"):
        response = staff_client.get("/v1/sites/SITE001/prices", {name: stamp})
        assert response.status_code == 400 and name in response.json()["errors"]


def test_prices_that_are_not_an_object_or_hold_a_lone_surrogate_are_field_errors(
    equipped_site, staff_client
):
    for body, field in [([1, 2], "non_field_errors"), ({"currency": "E\ud800R"}, "currency")]:
        text = json.dumps(body)  # the surrogate travels as the escape `\ud800`
        response = staff_client.generic(
            "PUT", "/v1/sites/SITE001/prices", text.encode(), content_type="application/json"
        )
        assert response.status_code == 400, response.content
        assert field in response.json()["errors"], response.json()


def test_a_slot_without_prices_takes_the_configured_tariff_in_the_sites_local_time(
    equipped_site,
):
    tariff = {
        "import_price": 0.20,
        "export_price": 0.04,
        "peak_import_price": 0.45,
        "peak_from_hour": 17,
        "peak_to_hour": 21,
    }
    update_site_config(equipped_site, {"tariff": tariff}, if_match=None, by="test")
    # Europe/Berlin is UTC+1 in January: 16:00 UTC is 17:00 local, in the peak band.
    starts = [T0 + timedelta(hours=15), T0 + timedelta(hours=16), T0 + timedelta(hours=20)]
    settings = services.site_settings(equipped_site, services.limits_for_site(equipped_site))
    buys, sells, _ = services.slot_prices(equipped_site, starts, 60, settings["tariff"])
    assert buys == [0.20, 0.45, 0.20]
    assert sells == [0.04, 0.04, 0.04]


def test_stored_prices_are_weighted_by_how_much_of_the_slot_they_cover(equipped_site):
    services.replace_prices(
        equipped_site,
        {
            "currency": "EUR",
            "slots": [
                {
                    "start": format_timestamp(T0 + timedelta(minutes=15 * k)),
                    "end": format_timestamp(T0 + timedelta(minutes=15 * (k + 1))),
                    "import_price": 0.1 * (k + 1),
                    "export_price": 0.0,
                }
                for k in range(4)
            ],
        },
    )
    buys, _, currency = services.slot_prices(equipped_site, [T0], 60, {})
    assert buys == [pytest.approx(0.25)]
    assert currency == "EUR"


def test_planning_without_prices_or_tariff_is_refused_with_422(equipped_site, staff_client):
    response = staff_client.post("/v1/sites/SITE001/plans", {}, format="json")
    assert response.status_code == 422
    assert response.json()["title"] == "No prices for the horizon"
    assert not Plan.objects.exists()


# --- the problem --------------------------------------------------------------------------------


def test_the_problem_sums_the_battery_units_and_takes_the_band_reserve_and_grid_limit(
    priced_site,
):
    update_site_config(
        priced_site,
        {"battery": {"reserve_pct": 30.0}, "grid": {"limit_kw": 350.0}},
        if_match=None,
        by="test",
    )
    problem, starts, context = services.build_problem(
        priced_site, horizon_h=24, slot_minutes=15, now=T0 + timedelta(minutes=7)
    )
    assert problem.battery.capacity_kwh == 280.0  # 2 units x 140 kWh
    assert problem.battery.max_charge_kw == 220.0
    assert (problem.battery.soc_min_pct, problem.battery.soc_max_pct) == (10.0, 90.0)
    assert problem.battery.reserve_pct == 30.0
    assert problem.grid_import_limit_kw == 350.0
    assert problem.soc_pct == 40.0  # the newest reading
    assert problem.slots == 96 and starts[0] == T0  # the slot now falls in comes first
    assert problem.import_price[:2] == (0.10, 0.10)
    assert context["currency"] == "EUR"


def test_the_load_history_is_grid_import_minus_export_plus_battery_power(equipped_site):
    at = T0 - timedelta(days=7)
    add_reading(equipped_site, at, grid_import=100.0, export=0.0, battery=-30.0)  # charging
    add_reading(
        equipped_site, at + timedelta(minutes=5), grid_import=0.0, export=10.0, battery=50.0
    )
    history = services.load_history(equipped_site, T0, 15)
    assert history == [(at, pytest.approx((70.0 + 40.0) / 2))]


# --- plans --------------------------------------------------------------------------------------


def test_a_plan_is_stored_with_the_contracts_fields_and_dispatched_as_a_schedule(
    priced_site, operator_client, enqueued
):
    with enqueued.committing(execute=True):
        response = operator_client.post(
            "/v1/sites/SITE001/plans", {"horizon_h": 6, "slot_minutes": 30}, format="json"
        )
    assert response.status_code == 201, response.json()
    plan = response.json()
    assert plan["id"].startswith("plan_") and plan["site_id"] == "SITE001"
    assert plan["reason"] == "manual" and plan["slot_minutes"] == 30
    assert plan["status"] in ("optimal", "feasible_with_violations")
    assert len(plan["slots"]) == 12
    assert set(plan["slots"][0]) >= {
        "start",
        "end",
        "battery_power_kw",
        "soc_pct",
        "grid_import_kw",
        "grid_export_kw",
        "import_price",
        "export_price",
    }
    assert plan["cost"]["savings"] == pytest.approx(
        plan["cost"]["baseline"] - plan["cost"]["total"]
    )
    command = Command.objects.get(command_id=plan["command_id"])
    assert command.command == "apply_schedule"
    assert [s["power_kw"] for s in command.params["slots"]] == [
        s["battery_power_kw"] for s in plan["slots"]
    ]
    assert command.valid_until == datetime.fromisoformat(plan["slots"][-1]["end"])
    assert [(t.name, args) for t, args, _ in enqueued if "deliver" in t.name] == [
        ("enexa.dispatch.tasks.deliver_command", (command.command_id,))
    ]
    in_force = operator_client.get("/v1/sites/SITE001/plan").json()
    assert in_force["id"] == plan["id"]


def test_plans_are_listed_newest_first_with_growing_versions(priced_site, staff_client):
    first = plan_now(priced_site)
    second = plan_now(priced_site, reason=PlanReason.SCHEDULED)
    listed = staff_client.get("/v1/sites/SITE001/plans").json()["plans"]
    assert [p["id"] for p in listed] == [second.code, first.code]
    assert [p["version"] for p in listed] == [2, 1]


@pytest.mark.parametrize("limit", ["0", "101", "²", "ten", "-1"])
def test_a_bad_limit_of_the_plan_list_is_a_field_error(equipped_site, staff_client, limit):
    response = staff_client.get("/v1/sites/SITE001/plans", {"limit": limit})
    assert response.status_code == 400
    assert "limit" in response.json()["errors"]


def test_a_plan_without_dispatch_is_kept_but_never_in_force(priced_site, staff_client):
    response = staff_client.post("/v1/sites/SITE001/plans", {"dispatch": False}, format="json")
    assert response.status_code == 201
    assert response.json()["command_id"] is None
    assert not Command.objects.exists()
    assert staff_client.get("/v1/sites/SITE001/plan").status_code == 404


def test_a_bad_plan_request_names_its_fields(priced_site, staff_client):
    response = staff_client.post(
        "/v1/sites/SITE001/plans", {"horizon_h": 169, "slot_minutes": 7}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"horizon_h", "slot_minutes"}
    week_of_5_min = {"horizon_h": 168, "slot_minutes": 5}
    response = staff_client.post("/v1/sites/SITE001/plans", week_of_5_min, format="json")
    assert response.status_code == 400
    assert "slot_minutes" in response.json()["errors"]


def test_a_viewer_reads_plans_and_prices_but_may_not_make_or_set_them(priced_site):
    viewer = UserFactory()
    MembershipFactory(user=viewer, site=priced_site, role=MemberRole.VIEWER)
    client = jwt_client(viewer)
    assert client.post("/v1/sites/SITE001/plans", {}, format="json").status_code == 403
    put = client.put("/v1/sites/SITE001/prices", hourly_prices(T0, 1), format="json")
    assert put.status_code == 403
    assert client.get("/v1/sites/SITE001/plans").status_code == 200
    assert client.get("/v1/sites/SITE001/prices").status_code == 200


def test_a_plan_keeps_its_inputs_so_it_can_be_reproduced(priced_site):
    plan = plan_now(priced_site, dispatch=False)
    problem = services.problem_from_inputs(plan.inputs)
    again, starts, context = services.build_problem(
        priced_site, horizon_h=24, slot_minutes=15, now=T0 + timedelta(minutes=5)
    )
    assert problem == again
    assert plan.inputs_digest == services.digest(services.problem_inputs(again, starts, context))


def test_a_new_dispatched_plan_supersedes_a_schedule_not_yet_delivered(priced_site):
    first = plan_now(priced_site)
    second = plan_now(priced_site)
    old = Command.objects.get(command_id=first.command_id)
    assert old.status == CommandStatus.EXPIRED
    assert second.code in old.detail
    assert Command.objects.get(command_id=second.command_id).status == CommandStatus.UNDELIVERED


def test_plan_actual_compares_each_slot_with_the_measurement(priced_site, staff_client):
    now = timezone.now()
    services.replace_prices(priced_site, hourly_prices(now - timedelta(hours=1), 30))
    plan = services.create_plan(priced_site, horizon_h=2, slot_minutes=15, now=now)
    first = plan.start_at
    add_reading(priced_site, first + timedelta(seconds=10), soc=41.0, grid_import=30.0, battery=5)
    add_reading(priced_site, first + timedelta(seconds=20), soc=42.0, grid_import=50.0, battery=15)
    body = staff_client.get("/v1/sites/SITE001/plan/actual").json()
    assert body["plan_id"] == plan.code
    slot = body["slots"][0]
    assert slot["planned_soc_pct"] == plan.slots[0]["soc_pct"]
    assert (slot["measured_soc_pct"], slot["measured_grid_import_kw"]) == (42.0, 40.0)
    assert slot["measured_battery_power_kw"] == 10.0
    assert body["slots"][-1]["measured_soc_pct"] is None
    assert len(body["slots"]) == 8


def test_no_plan_in_force_is_a_404_for_the_plan_and_its_actual(equipped_site, staff_client):
    assert staff_client.get("/v1/sites/SITE001/plan").status_code == 404
    assert staff_client.get("/v1/sites/SITE001/plan/actual").status_code == 404


def test_listeners_hear_of_each_plan_once_it_is_committed(
    priced_site, django_capture_on_commit_callbacks
):
    heard = []

    def listen(sender, plan, **kwargs):
        heard.append(plan.code)

    services.plan_created.connect(listen)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            plan = plan_now(priced_site, dispatch=False)
            assert heard == []
        assert heard == [plan.code]
    finally:
        services.plan_created.disconnect(listen)


# --- re-planning --------------------------------------------------------------------------------


def replans(enqueued) -> list[tuple]:
    return [args[:2] for task, args, _ in enqueued if task.name.endswith("replan_site")]


def test_new_prices_and_a_configuration_change_re_plan_a_controlled_site(priced_site, enqueued):
    ControllerFactory(site=priced_site)
    with enqueued.committing(execute=True):
        services.replace_prices(priced_site, hourly_prices(T0, 2))
    assert replans(enqueued) == []  # not under the optimizer's control yet
    plan_now(priced_site)
    enqueued.clear()
    with enqueued.committing(execute=True):
        services.replace_prices(priced_site, hourly_prices(T0, 2, price=0.5))
        update_site_config(priced_site, {"grid": {"limit_kw": 300}}, if_match=None, by="t")
    assert (priced_site.pk, "prices") in replans(enqueued)
    assert (priced_site.pk, "config") in replans(enqueued)


def test_a_re_plan_already_made_since_it_was_asked_is_not_repeated(priced_site):
    plan_now(priced_site)
    since = format_timestamp(timezone.now())
    made = services.replan_site(priced_site.pk, PlanReason.PRICES, since)
    assert made is not None and made.reason == "prices"
    assert services.replan_site(priced_site.pk, PlanReason.PRICES, since) is None
    assert Plan.objects.count() == 2


def test_a_re_plan_costs_a_fixed_number_of_queries_however_long_the_history(
    priced_site, django_assert_max_num_queries
):
    week_ago = T0 - timedelta(days=7)
    for k in range(200):
        add_reading(priced_site, week_ago + timedelta(minutes=5 * k), grid_import=40.0 + k % 7)
    plan_now(priced_site)
    # Reads: site, equipment, settings, prices, SOC, history, lock, previous plan, forecast
    # error (history and forecast error each from the aggregates, after a look for minutes
    # still to refresh); writes: superseded schedules, the command (looked up first), the plan.
    with django_assert_max_num_queries(19):
        made = services.replan_site(priced_site.pk, "scheduled", now=T0 + timedelta(minutes=20))
    assert made is not None and made.version == 2


def test_a_site_never_planned_is_not_re_planned(priced_site):
    assert services.replan_site(priced_site.pk, PlanReason.SCHEDULED) is None
    assert services.sites_due() == []


def test_the_periodic_re_plan_takes_controlled_sites_whose_plan_is_old(priced_site, enqueued):
    plan = plan_now(priced_site)
    assert services.sites_due(now=plan.created_at + timedelta(minutes=5)) == []
    later = plan.created_at + timedelta(minutes=15)
    assert services.sites_due(now=later) == [priced_site.pk]


def test_the_beat_task_fans_out_one_expiring_re_plan_per_due_site(priced_site, enqueued):
    Plan.objects.all().delete()
    plan_now(priced_site, now=timezone.now() - timedelta(hours=1))
    enqueued.clear()
    assert tasks.replan_due_sites.run() == 1
    assert replans(enqueued) == [(priced_site.pk, "scheduled")]


def test_soc_drift_beyond_the_threshold_re_plans_with_that_reason(priced_site, enqueued, settings):
    settings.ENEXA_OPTIMIZER_SOC_DRIFT_PCT = 5.0
    now = timezone.now()
    services.replace_prices(priced_site, hourly_prices(now - timedelta(hours=1), 30))
    plan = services.create_plan(priced_site, now=now)
    planned = services.planned_soc_at(plan, now + timedelta(seconds=30))
    add_reading(priced_site, now + timedelta(seconds=30), soc=planned + 2.0)
    enqueued.clear()
    assert services.check_drift(now=now + timedelta(minutes=1)) == []
    add_reading(priced_site, now + timedelta(seconds=40), soc=planned + 9.0)
    assert services.check_drift(now=now + timedelta(minutes=1)) == ["SITE001"]
    assert replans(enqueued) == [(priced_site.pk, "soc_drift")]
    enqueued.run_all()
    newest = services.plans_of(priced_site).first()
    assert newest.reason == "soc_drift"
    assert newest.inputs["problem"]["soc_pct"] == pytest.approx(planned + 9.0)


def outage_until(site, now: datetime) -> OutageReport:
    """The report of a 20-minute silence that ended at `now`."""
    return OutageReport.objects.create(
        site=site,
        silent_since=now - timedelta(minutes=20),
        offline_at=now - timedelta(minutes=18),
        online_at=now,
        interval_s=5,
    )


def test_after_an_outage_a_controlled_site_gets_a_reconnect_plan_not_its_stale_schedule(
    priced_site,
):
    now = timezone.now()
    services.replace_prices(priced_site, hourly_prices(now - timedelta(hours=1), 30))
    stale = services.create_plan(priced_site, now=now - timedelta(minutes=30))
    report = outage_until(priced_site, now)
    add_reading(priced_site, now, soc=22.0)
    report = recover_site(report, now=now)
    newest = services.plans_of(priced_site).first()
    assert newest.reason == "reconnect"
    assert newest.inputs["problem"]["soc_pct"] == 22.0
    assert report.commands_redelivered["replanned"]["plan"] == newest.code
    assert Command.objects.get(command_id=stale.command_id).status == CommandStatus.EXPIRED
    assert Command.objects.get(command_id=newest.command_id).status != CommandStatus.EXPIRED


def test_after_an_outage_a_site_without_plans_is_left_to_the_redelivery(equipped_site):
    now = timezone.now()
    report = outage_until(equipped_site, now)
    report = recover_site(report, now=now)
    assert "replanned" not in report.commands_redelivered
    assert not Plan.objects.exists()


def test_with_a_cheap_night_the_plan_charges_then_and_covers_the_dear_hours_below_baseline(
    priced_site,
):
    week_ago = T0 - timedelta(days=7)
    for k in range(96):  # a 50 kW load all day, a week ago
        add_reading(priced_site, week_ago + timedelta(minutes=15 * k), grid_import=50.0)
    plan = plan_now(priced_site, dispatch=False)
    power = [s["battery_power_kw"] for s in plan.slots]
    night, day = power[: 6 * 4], power[6 * 4 :]
    assert min(night) < -1.0  # charges while import costs 0.10
    assert max(day) > 1.0  # discharges while it costs 0.30
    assert plan.cost_total < plan.cost_baseline
    assert all(s["load_kw"] == pytest.approx(50.0, abs=0.5) for s in plan.slots)


def test_a_new_plan_reports_how_far_the_previous_forecast_was_from_the_load_measured(
    priced_site,
):
    week_ago = T0 - timedelta(days=7)
    for k in range(8):
        add_reading(priced_site, week_ago + timedelta(minutes=15 * k), grid_import=50.0)
    first = plan_now(priced_site, now=T0 + timedelta(minutes=1))
    assert first.slots[0]["load_kw"] == pytest.approx(50.0)
    add_reading(priced_site, T0 + timedelta(minutes=3), grid_import=20.0, battery=10.0)  # 30 kW
    second = plan_now(priced_site, now=T0 + timedelta(minutes=16))
    assert second.previous_forecast_error_kw == pytest.approx(20.0)
    assert first.previous_forecast_error_kw is None


def test_plans_past_their_retention_go_but_each_sites_newest_stays(priced_site, settings):
    settings.ENEXA_OPTIMIZER_PLAN_RETENTION_DAYS = 14
    old = [plan_now(priced_site) for _ in range(3)]  # horizons end on 2026-01-16
    assert services.prune_plans(now=T0 + timedelta(days=10)) == 0
    assert services.prune_plans(now=T0 + timedelta(days=20)) == 2
    assert list(Plan.objects.values_list("code", flat=True)) == [old[-1].code]
    assert services.is_controlled(priced_site.pk)


@override_settings(ENEXA_WEBHOOK_ALLOW_PRIVATE=True)
def test_a_new_plan_is_published_to_webhooks_as_plan_created_without_its_slots(
    priced_site, operator, enqueued
):
    from enexa.webhooks import services as webhooks
    from enexa.webhooks.models import WebhookDelivery

    webhooks.create_webhook(
        owner=operator, url="http://127.0.0.1:9/", events=["plan.created"], site_codes=None
    )
    with enqueued.committing(execute=True):
        plan = plan_now(priced_site, dispatch=False)
    [delivery] = WebhookDelivery.objects.all()
    body = json.loads(delivery.body)
    assert body["type"] == "plan.created"
    assert body["data"]["id"] == plan.code and body["data"]["site_id"] == priced_site.code
    assert body["data"]["cost"]["baseline"] == plan.cost_baseline
    assert "slots" not in body["data"] and body["data"]["start"] < body["data"]["end"]
