"""Alerts: each rule opens one alert per site while its condition holds, follows it, resolves
it when it clears; the API lists the caller's sites' alerts and lets operators acknowledge."""

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from enexa.alerts import services
from enexa.alerts.models import Alert
from enexa.alerts.rules import RULES, Rule
from enexa.audit.models import AuditEntry
from enexa.configs.models import ConfigState
from enexa.dispatch.models import Command
from enexa.firmware.models import FirmwareReport
from enexa.registry.choices import ControllerState, MemberRole
from enexa.telemetry import tasks as telemetry_tasks
from enexa.telemetry.models import Event, SiteStatus, SiteStatusTransition
from enexa.telemetry.services import Poster, ingest_events
from tests.conftest import jwt_client
from tests.factories import (
    ControllerFactory,
    MembershipFactory,
    SiteStatusFactory,
    UserFactory,
    add_reading,
)
from tests.httppeer import HttpPeer

pytestmark = pytest.mark.django_db


def event(site, kind, data, *, ago_s=0.0, message=""):
    at = timezone.now() - timedelta(seconds=ago_s)
    return Event.objects.create(
        site=site,
        event_id=uuid.uuid4().hex,
        timestamp=at,
        received_at=at,
        kind=kind,
        data=data,
        message=message,
    )


def reading(site, *, ago_s=0.0, **values):
    at = timezone.now() - timedelta(seconds=ago_s)
    return add_reading(site, at, **values)


def open_alerts(rule=None):
    alerts = Alert.objects.exclude(state="resolved")
    return list(alerts.filter(rule=rule) if rule else alerts)


def test_an_offline_site_opens_one_alert_however_often_the_rules_run_and_it_resolves_itself(site):
    SiteStatusFactory(site=site, online=False)
    for _ in range(3):
        services.evaluate(rules=["site_offline"])
    [alert] = open_alerts("site_offline")
    assert (alert.site, alert.severity, alert.state) == (site, "critical", "open")
    SiteStatus.objects.filter(site=site).update(online=True)
    assert services.evaluate(rules=["site_offline"])["resolved"] == 1
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved_at is not None


def test_the_database_refuses_a_second_unresolved_alert_of_the_same_rule_and_site(site):
    services.open_alert("site_offline", "critical", {}, site_pk=site.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(
            code="alr_dup",
            site=site,
            rule="site_offline",
            severity="critical",
            opened_at=timezone.now(),
        )


def test_a_condition_that_returns_after_resolving_opens_a_new_alert(site):
    status = SiteStatusFactory(site=site, online=False)
    services.evaluate(rules=["site_offline"])
    SiteStatus.objects.filter(pk=status.pk).update(online=True)
    services.evaluate(rules=["site_offline"])
    SiteStatus.objects.filter(pk=status.pk).update(online=False)
    services.evaluate(rules=["site_offline"])
    assert Alert.objects.filter(rule="site_offline").count() == 2
    assert len(open_alerts("site_offline")) == 1


def test_the_modbus_link_alert_follows_the_link_events_and_the_newer_status_report(site):
    SiteStatusFactory(
        site=site, modbus_link_up=True, reported_at=timezone.now() - timedelta(minutes=5)
    )
    event(site, "modbus_link", {"state": "down", "error": "Connection refused"})
    services.evaluate(rules=["modbus_link_down"])
    [alert] = open_alerts("modbus_link_down")
    assert alert.detail["error"] == "Connection refused"
    event(site, "modbus_link", {"state": "restored", "gap_s": 12.0}, ago_s=-1)
    services.evaluate(rules=["modbus_link_down"])
    assert open_alerts("modbus_link_down") == []
    # A status report newer than every event speaks for the link.
    SiteStatus.objects.filter(site=site).update(
        modbus_link_up=False, reported_at=timezone.now() + timedelta(seconds=5)
    )
    services.evaluate(rules=["modbus_link_down"])
    assert len(open_alerts("modbus_link_down")) == 1


def test_alarm_bits_open_the_watchdog_and_chargepost_alarms_and_clearing_them_resolves_both(site):
    SiteStatusFactory(site=site)
    event(site, "alarm", {"chargepost": 1, "alarm_bits": 0b11}, ago_s=10)
    event(site, "watchdog", {"chargepost": 1, "alarm_bits": 0b11}, ago_s=10)
    event(site, "alarm", {"chargepost": 2, "alarm_bits": 0b100}, ago_s=9)
    services.evaluate(rules=["watchdog_fallback", "chargepost_alarm"])
    [watchdog] = open_alerts("watchdog_fallback")
    assert [c["chargepost"] for c in watchdog.detail["chargeposts"]] == [1]
    [alarm] = open_alerts("chargepost_alarm")
    assert [(c["chargepost"], c["bits"]) for c in alarm.detail["chargeposts"]] == [
        (1, [1]),
        (2, [2]),
    ]
    event(site, "alarm", {"chargepost": 1, "alarm_bits": 0})
    event(site, "alarm", {"chargepost": 2, "alarm_bits": 0})
    services.evaluate(rules=["watchdog_fallback", "chargepost_alarm"])
    assert open_alerts() == []


def command(site, status, *, ago_s=0.0):
    stored = Command.objects.create(
        command_id=uuid.uuid4().hex,
        site=site,
        command="set_mode",
        params={"mode": "auto"},
        issued_at=timezone.now(),
        created_by="staff",
        status=status,
        detail="Refused by the unit",
    )
    Command.objects.filter(pk=stored.pk).update(
        updated_at=timezone.now() - timedelta(seconds=ago_s)
    )
    return stored


@override_settings(ENEXA_ALERT_COMMAND_WINDOW_S=600)
def test_failed_rejected_and_expired_commands_in_the_window_open_an_alert_that_lists_them(site):
    failed, rejected = command(site, "failed"), command(site, "rejected", ago_s=60)
    command(site, "expired", ago_s=3600)  # outside the window
    command(site, "applied")
    services.evaluate(rules=["command_failed"])
    [alert] = open_alerts("command_failed")
    assert alert.detail["count"] == 2
    assert {c["command_id"] for c in alert.detail["commands"]} == {
        failed.command_id,
        rejected.command_id,
    }
    Command.objects.update(updated_at=timezone.now() - timedelta(hours=2))
    services.evaluate(rules=["command_failed"])
    assert open_alerts() == []


def test_soc_outside_the_sites_band_opens_an_alert_and_back_inside_resolves_it(equipped_site):
    ControllerFactory(site=equipped_site, state=ControllerState.ACTIVE)
    SiteStatusFactory(site=equipped_site)
    reading(equipped_site, ago_s=5, battery_soc_pct=1.0)
    services.evaluate(rules=["soc_out_of_band"])
    [alert] = open_alerts("soc_out_of_band")
    assert alert.detail["soc_pct"] == 1.0 and alert.detail["soc_min_pct"] > 2.0
    reading(equipped_site, battery_soc_pct=50.0)
    services.evaluate(rules=["soc_out_of_band"])
    assert open_alerts() == []


@override_settings(ENEXA_ALERT_GRID_OVER_LIMIT_S=120)
def test_grid_import_above_the_limit_alerts_only_once_it_lasted_the_set_time(site):
    ControllerFactory(site=site, state=ControllerState.ACTIVE)
    SiteStatusFactory(site=site)
    reading(site, ago_s=200, grid_import_kw=100.0)
    reading(site, ago_s=60, grid_import_kw=900.0)
    reading(site, ago_s=1, grid_import_kw=900.0)
    services.evaluate(rules=["grid_import_over_limit"])
    assert open_alerts() == []  # over for 60 s only
    reading(site, ago_s=150, grid_import_kw=950.0)
    services.evaluate(rules=["grid_import_over_limit"])
    [alert] = open_alerts("grid_import_over_limit")
    assert alert.detail["grid_import_kw"] == 900.0 and alert.detail["limit_kw"] < 900.0
    reading(site, ago_s=-1, grid_import_kw=10.0)
    services.evaluate(rules=["grid_import_over_limit"])
    assert open_alerts() == []


def test_a_failed_firmware_update_alerts_until_a_newer_report_says_otherwise(site):
    controller = ControllerFactory(site=site, state=ControllerState.ACTIVE)
    FirmwareReport.objects.create(
        controller=controller,
        current_version="1.0.0",
        status="failed",
        target_version="1.1.0",
        error="checksum",
    )
    services.evaluate(rules=["firmware_update_failed"])
    [alert] = open_alerts("firmware_update_failed")
    assert alert.detail["controllers"][0] | {"reported_at": None} == {
        "controller_id": controller.code,
        "target_version": "1.1.0",
        "error": "checksum",
        "reported_at": None,
    }
    FirmwareReport.objects.create(controller=controller, current_version="1.1.0", status="ok")
    services.evaluate(rules=["firmware_update_failed"])
    assert open_alerts() == []


@override_settings(ENEXA_ALERT_CONFIG_DRIFT_S=600)
def test_a_configuration_not_applied_for_longer_than_the_set_time_is_drift(site):
    controller = ControllerFactory(site=site, state=ControllerState.ACTIVE)
    state = ConfigState.objects.get(controller=controller)
    ConfigState.objects.filter(pk=state.pk).update(
        applied_version=None, updated_at=timezone.now() - timedelta(seconds=60)
    )
    services.evaluate(rules=["config_drift"])
    assert open_alerts() == []  # drifting, but not for long
    ConfigState.objects.filter(pk=state.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    services.evaluate(rules=["config_drift"])
    [alert] = open_alerts("config_drift")
    assert alert.detail["controllers"][0]["controller_id"] == controller.code
    ConfigState.objects.filter(pk=state.pk).update(applied_version=state.version)
    services.evaluate(rules=["config_drift"])
    assert open_alerts() == []


@override_settings(ENEXA_ALERT_TELEMETRY_GAP_S=60)
def test_an_online_site_without_readings_for_the_set_time_has_a_telemetry_gap(site):
    SiteStatusFactory(site=site)
    SiteStatusTransition.objects.create(
        site=site, online=True, at=timezone.now() - timedelta(minutes=10), reason="status"
    )
    reading(site, ago_s=300, battery_soc_pct=50.0)
    services.evaluate(rules=["telemetry_gap"])
    [alert] = open_alerts("telemetry_gap")
    assert alert.severity == "warning"
    reading(site, battery_soc_pct=50.0)
    services.evaluate(rules=["telemetry_gap"])
    assert open_alerts() == []


def test_a_gateway_in_safe_mode_or_with_a_deep_outbox_is_degraded(site, other_site):
    SiteStatusFactory(site=site, mode="safe")
    SiteStatusFactory(site=other_site, mode="auto", buffer_depth=5000)
    services.evaluate(rules=["gateway_degraded"])
    details = {a.site.code: a.detail["reasons"] for a in open_alerts("gateway_degraded")}
    assert details == {"SITE001": ["mode safe"], "SITE002": ["outbox holds 5000 readings"]}


def test_evaluating_one_site_leaves_the_alerts_of_other_sites_alone(site, other_site):
    SiteStatusFactory(site=site, online=False)
    SiteStatusFactory(site=other_site, online=False)
    services.evaluate(rules=["site_offline"])
    SiteStatus.objects.update(online=True)
    services.evaluate(rules=["site_offline"], site_pks={site.pk})
    assert [a.site for a in open_alerts()] == [other_site]


def test_a_rule_that_raises_does_not_stop_the_others(site, monkeypatch):
    SiteStatusFactory(site=site, online=False)

    def broken(now, site_pks):
        raise RuntimeError("bug")

    monkeypatch.setitem(RULES, "gateway_degraded", Rule("gateway_degraded", "warning", broken))
    assert services.evaluate()["opened"] >= 1
    assert [a.rule for a in open_alerts()] == ["site_offline"]


@pytest.mark.django_db(transaction=True)
def test_a_stored_modbus_link_event_has_the_worker_re_check_that_rule_for_its_site(site, enqueued):
    ingest_events(
        Poster(may_post_for=lambda site_pk: True),
        {
            "site_id": site.code,
            "event_id": "e1",
            "timestamp": timezone.now().isoformat(),
            "kind": "modbus_link",
            "data": {"state": "down", "error": "timeout"},
        },
    )
    evaluations = [args for task, args, _ in enqueued if task.name.endswith("evaluate_site")]
    # The event is also the site's first contact: it comes online, and presence is re-checked.
    assert (site.pk, ["modbus_link_down"]) in evaluations
    enqueued.run_all()
    assert [a.rule for a in open_alerts()] == ["modbus_link_down"]


# -- the gateway rules read Amperio's polled health while it is fresh ----------------------------

HEALTH_RULES = ["gateway_degraded", "modbus_link_down", "watchdog_fallback"]


def gateway_health(*, polled_ago_s=0.0, **values):
    """SiteStatus fields for a gateway health polled `polled_ago_s` ago: healthy unless told."""
    at = timezone.now() - timedelta(seconds=polled_ago_s)
    health = {
        "status": "ok",
        "modbus_link_up": True,
        "watchdog_beating": True,
        "mode": "auto",
        "autonomy": "normal",
        "buffer_depth": 0,
        "unconfirmed_commands": 0,
        "last_report_at": at.isoformat(),
        "last_report_age_s": 2.0,
        "at": at.isoformat(),
        **values,
    }
    return {"gateway_health": health, "gateway_health_at": at}


def alert_details():
    return {a.rule: a.detail for a in open_alerts()}


def test_each_gateway_rule_opens_from_the_polled_health_and_resolves_when_it_clears(site):
    # The gateway's own last status report says all is well: only the health can open these.
    SiteStatusFactory(
        site=site,
        mode="auto",
        modbus_link_up=True,
        reported_at=timezone.now() - timedelta(seconds=20),
        **gateway_health(
            status="degraded",
            modbus_link_up=False,
            watchdog_beating=False,
            unconfirmed_commands=2,
        ),
    )
    services.evaluate(rules=HEALTH_RULES)
    details = alert_details()
    assert set(details) == set(HEALTH_RULES)
    assert {d["source"] for d in details.values()} == {"amperio_health"}
    assert details["gateway_degraded"]["reasons"] == [
        "modbus link down",
        "watchdog not beating",
        "2 unconfirmed commands",
    ]
    assert details["watchdog_fallback"]["watchdog_beating"] is False

    SiteStatus.objects.filter(site=site).update(**gateway_health())
    assert services.evaluate(rules=HEALTH_RULES)["resolved"] == 3
    assert open_alerts() == []


def test_the_health_opens_degraded_for_its_mode_its_outbox_or_a_gateway_silent_towards_amperio(
    site, other_site, settings
):
    settings.ENEXA_ALERT_BUFFER_DEPTH_MAX = 100
    silent = gateway_health(status="degraded", last_report_age_s=600.0)
    silent["gateway_health"]["last_report_at"] = "2026-12-05T04:00:00Z"
    SiteStatusFactory(site=site, mode="auto", **silent)
    SiteStatusFactory(
        site=other_site,
        mode="auto",
        buffer_depth=0,
        **gateway_health(mode="safe", buffer_depth=250),
    )
    services.evaluate(rules=["gateway_degraded"])
    reasons = {a.site.code: a.detail["reasons"] for a in open_alerts("gateway_degraded")}
    assert reasons == {
        "SITE001": ["no report to Amperio since 2026-12-05T04:00:00Z"],
        "SITE002": ["mode safe", "outbox holds 250 readings"],
    }


def test_a_stale_health_is_not_read_and_the_gateways_own_reports_decide_and_say_so(site, settings):
    settings.ENEXA_ALERT_HEALTH_FRESH_S = 90
    # Amperio was last reached 5 minutes ago, when it saw everything wrong: that says nothing now.
    stale = gateway_health(
        polled_ago_s=300, status="degraded", modbus_link_up=False, watchdog_beating=False
    )
    SiteStatusFactory(
        site=site,
        mode="auto",
        modbus_link_up=True,
        reported_at=timezone.now() - timedelta(seconds=10),
        **stale,
    )
    services.evaluate(rules=HEALTH_RULES)
    assert open_alerts() == []

    SiteStatus.objects.filter(site=site).update(mode="safe", modbus_link_up=False)
    event(site, "watchdog", {"chargepost": 1, "alarm_bits": 0b1}, ago_s=30)
    services.evaluate(rules=HEALTH_RULES)
    details = alert_details()
    polled_at = stale["gateway_health_at"]
    assert (details["gateway_degraded"]["source"], details["gateway_degraded"]["reasons"]) == (
        "status_report",
        ["mode safe"],
    )
    assert details["modbus_link_down"]["source"] == "status_report"
    assert details["watchdog_fallback"]["source"] == "gateway_events"
    for rule in ("gateway_degraded", "modbus_link_down"):
        assert details[rule]["health_at"][:19] == polled_at.strftime("%Y-%m-%dT%H:%M:%S")


def test_a_site_without_polled_health_or_not_listed_by_amperio_falls_back(site, other_site):
    SiteStatusFactory(site=site, modbus_link_up=False, reported_at=timezone.now())
    SiteStatusFactory(
        site=other_site,
        modbus_link_up=False,
        reported_at=timezone.now(),
        **gateway_health(status="not_reported", modbus_link_up=None),
    )
    services.evaluate(rules=["modbus_link_down"])
    sources = {a.site.code: a.detail["source"] for a in open_alerts("modbus_link_down")}
    assert sources == {"SITE001": "status_report", "SITE002": "status_report"}
    assert {a.detail["health_at"] is None for a in open_alerts()} == {True, False}


def test_fresh_health_outweighs_an_older_status_report_but_a_link_event_after_the_poll_wins(site):
    SiteStatusFactory(
        site=site,
        modbus_link_up=False,
        reported_at=timezone.now() - timedelta(seconds=40),
        **gateway_health(polled_ago_s=10),
    )
    services.evaluate(rules=["modbus_link_down"])
    assert open_alerts() == []
    # The link drops after the poll: the event is newer news and opens the alert at once.
    event(site, "modbus_link", {"state": "down", "error": "timeout"})
    services.evaluate(rules=["modbus_link_down"], site_pks={site.pk})
    [alert] = open_alerts("modbus_link_down")
    assert (alert.detail["source"], alert.detail["error"]) == ("gateway_events", "timeout")
    # The next poll also sees it down: the health speaks again and keeps the alert open.
    SiteStatus.objects.filter(site=site).update(**gateway_health(modbus_link_up=False))
    services.evaluate(rules=["modbus_link_down"])
    [same] = open_alerts("modbus_link_down")
    assert (same.pk, same.detail["source"]) == (alert.pk, "amperio_health")


def test_a_watchdog_that_stopped_beating_alerts_only_while_the_site_is_online(site, other_site):
    SiteStatusFactory(site=site, **gateway_health(watchdog_beating=False))
    SiteStatusFactory(site=other_site, online=False, **gateway_health(watchdog_beating=False))
    services.evaluate(rules=["watchdog_fallback"])
    assert [a.site for a in open_alerts("watchdog_fallback")] == [site]


@pytest.mark.parametrize("rule", HEALTH_RULES)
def test_a_gateway_rule_reads_the_whole_fleet_in_the_same_few_queries(rule, site):
    def queries_for(sites):
        with CaptureQueriesContext(connection) as captured:
            found = RULES[rule].check(timezone.now(), None)
        assert len(found) == sites
        return len(captured)

    broken = gateway_health(status="degraded", modbus_link_up=False, watchdog_beating=False)
    SiteStatusFactory(site=site, **broken)
    one = queries_for(1)
    for _ in range(4):
        SiteStatusFactory(
            **gateway_health(status="degraded", modbus_link_up=False, watchdog_beating=False)
        )
        event(SiteStatus.objects.latest("pk").site, "watchdog", {"chargepost": 1, "alarm_bits": 1})
    assert queries_for(5) == one <= 2


def test_a_stored_health_poll_has_the_worker_re_check_the_gateway_rules_at_once(site, enqueued):
    def handle(method, path, headers, body):
        return 200, {"status": "degraded", "sites": {"SITE001": down}}

    SiteStatusFactory(site=site)
    down = {"status": "degraded", "modbus": {"link_up": False}, "watchdog": {"beating": True}}
    with (
        HttpPeer(handle) as amperio,
        override_settings(ENEXA_AMPERIO_URL=amperio.url, ENEXA_AMPERIO_TOKEN="svc-token"),
        enqueued.committing(execute=True),
    ):
        assert telemetry_tasks.poll_gateway_health()["result"] == "recorded"
    evaluations = [(t.name, args) for t, args, _ in enqueued]
    assert evaluations == [("enexa.alerts.tasks.evaluate_alerts", (HEALTH_RULES,))]
    enqueued.run_all()
    details = alert_details()
    assert sorted(details) == ["gateway_degraded", "modbus_link_down"]
    assert details["gateway_degraded"]["reasons"] == ["modbus link down"]


# -- the API ------------------------------------------------------------------------------------


def test_the_alert_list_shows_the_callers_sites_only_and_filters_by_site_and_state(
    site, other_site, operator_client, staff_client
):
    mine, _ = services.open_alert("site_offline", "critical", {}, site_pk=site.pk)
    services.open_alert("site_offline", "critical", {}, site_pk=other_site.pk)
    body = operator_client.get("/v1/alerts").json()
    assert [a["id"] for a in body["alerts"]] == [mine.code]
    assert body["alerts"][0] | {"opened_at": None} == {
        "id": mine.code,
        "site_id": "SITE001",
        "rule": "site_offline",
        "subject": "",
        "severity": "critical",
        "state": "open",
        "opened_at": None,
        "acknowledged_at": None,
        "acknowledged_by": "",
        "resolved_at": None,
        "detail": {},
    }
    assert staff_client.get("/v1/alerts").json()["count"] == 2
    assert staff_client.get("/v1/alerts?site=SITE002").json()["alerts"][0]["site_id"] == "SITE002"
    assert operator_client.get("/v1/alerts?site=SITE002").json()["alerts"] == []
    assert staff_client.get("/v1/alerts?state=resolved").json()["alerts"] == []


def test_an_unknown_state_filter_is_a_field_error(operator_client):
    response = operator_client.get("/v1/alerts?state=closed")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert "state" in response.json()["errors"]


def test_an_operator_acknowledges_an_alert_which_stays_until_its_condition_clears(
    site, operator_client, operator
):
    SiteStatusFactory(site=site, online=False)
    services.evaluate(rules=["site_offline"])
    [alert] = open_alerts()
    response = operator_client.post(f"/v1/alerts/{alert.code}/acknowledge")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "acknowledged"
    assert response.json()["acknowledged_by"] == "user:operator"
    entry = AuditEntry.objects.get(path=f"/v1/alerts/{alert.code}/acknowledge")
    assert {"model": "alerts.alert", "id": alert.code, "action": "target"} in entry.changes
    services.evaluate(rules=["site_offline"])
    assert [a.state for a in Alert.objects.all()] == ["acknowledged"]
    SiteStatus.objects.update(online=True)
    services.evaluate(rules=["site_offline"])
    assert [a.state for a in Alert.objects.all()] == ["resolved"]
    response = operator_client.post(f"/v1/alerts/{alert.code}/acknowledge")
    assert response.status_code == 409


def test_a_viewer_reads_alerts_but_may_not_acknowledge_and_another_site_gets_404(site, other_site):
    viewer = UserFactory()
    MembershipFactory(user=viewer, site=site, role=MemberRole.VIEWER)
    stranger = UserFactory()
    MembershipFactory(user=stranger, site=other_site)
    alert, _ = services.open_alert("site_offline", "critical", {}, site_pk=site.pk)
    assert jwt_client(viewer).get("/v1/alerts").json()["count"] == 1
    assert jwt_client(viewer).post(f"/v1/alerts/{alert.code}/acknowledge").status_code == 403
    assert jwt_client(stranger).post(f"/v1/alerts/{alert.code}/acknowledge").status_code == 404
    alert.refresh_from_db()
    assert alert.state == "open"


def test_an_alert_without_a_site_is_for_staff_only(site, operator_client, staff_client):
    alert, _ = services.open_alert("webhook_disabled", "warning", {}, subject="wh_1")
    assert operator_client.get("/v1/alerts").json()["alerts"] == []
    assert operator_client.post(f"/v1/alerts/{alert.code}/acknowledge").status_code == 404
    assert staff_client.post(f"/v1/alerts/{alert.code}/acknowledge").status_code == 200


def test_the_admin_lists_alerts_and_acknowledges_the_selected(admin_client, site):
    alert, _ = services.open_alert("site_offline", "critical", {}, site_pk=site.pk)
    assert alert.code.encode() in admin_client.get("/admin/alerts/alert/").content
    admin_client.post(
        "/admin/alerts/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]}
    )
    alert.refresh_from_db()
    assert alert.state == "acknowledged"


@pytest.mark.django_db(transaction=True)
def test_a_gateways_command_event_queues_no_alert_evaluation(site, enqueued):
    # command_failed reads Enexa's commands, which the event does not change; each dispatched
    # command's event used to queue an evaluation on the worker that delivers commands.
    result = ingest_events(
        Poster(may_post_for=lambda site_pk: True),
        {
            "items": [
                {
                    "site_id": site.code,
                    "event_id": f"e{n}",
                    "timestamp": timezone.now().isoformat(),
                    "kind": "command",
                    "severity": "warning",
                    "message": "Command c1 (set_grid_limit) failed",
                    "data": {"command_id": f"c{n}", "command": "set_grid_limit", "status": status},
                }
                for n, status in enumerate(["applied", "failed"])
            ]
        },
    )
    assert result.accepted == 2
    evaluations = [args for task, args, _ in enqueued if task.name.endswith("evaluate_site")]
    assert all("command_failed" not in rules for _, rules in evaluations)
