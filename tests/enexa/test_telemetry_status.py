"""Site status: online and last seen from status reports and telemetry, offline after a silence
with every transition kept, and recovery when a site comes back (redelivery of undelivered
commands and an outage report of expected versus received readings)."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from enexa.dispatch.choices import CommandStatus
from enexa.dispatch.models import Command
from enexa.telemetry import services
from enexa.telemetry.models import OutageReport, SiteStatus, SiteStatusTransition
from enexa.telemetry.views import poster_for
from shared.fields import format_timestamp
from tests.conftest import jwt_client
from tests.factories import (
    ControllerFactory,
    MembershipFactory,
    SiteStatusFactory,
    UserFactory,
)
from tests.httppeer import HttpPeer


@pytest.fixture
def t0():
    """A round moment an hour ago: every reading of these tests is in the past."""
    return (timezone.now() - timedelta(hours=1)).replace(second=0, microsecond=0)


@pytest.fixture
def amperio(settings):
    """A real HTTP server standing in for Amperio's API: dispatch takes every command, each
    command's status is `peer.outcomes` (else queued), health answers `peer.health`."""

    def handle(method, path, headers, body):
        if method == "POST":
            return 202, {"command_id": body["command_id"], "status": "queued"}
        if path == "/v1/health":
            return 200, {"status": "ok", "sites": peer.health, "enexa": {"reachable": True}}
        command_id = path.rsplit("/", 1)[-1]
        return 200, peer.outcomes.get(command_id, {"command_id": command_id, "status": "queued"})

    with HttpPeer(handle) as peer:
        peer.health, peer.outcomes = {}, {}
        settings.ENEXA_AMPERIO_URL = peer.url
        settings.ENEXA_AMPERIO_TOKEN = "svc-token"
        yield peer


def posted(peer):
    return [r["body"]["command_id"] for r in peer.requests if r["method"] == "POST"]


def reading(ts, message_id, **extra):
    return {
        "site_id": "SITE001",
        "timestamp": format_timestamp(ts),
        "message_id": message_id,
        "battery": {"soc_pct": 50, "power_kw": 0},
        **extra,
    }


def live(staff, t0, seconds, *, now_s=None):
    """Post live readings at t0 + each of `seconds`, as if received at t0 + now_s."""
    now = t0 + timedelta(seconds=now_s if now_s is not None else max(seconds))
    items = [reading(t0 + timedelta(seconds=s), f"r-{s}") for s in seconds]
    return services.ingest_readings(poster_for(staff), {"items": items}, now=now)


def reconnect(enqueued, staff, t0, seconds):
    """`live` readings that bring the site back, committed; then what that enqueued (the
    recovery that asks Amperio) runs, as the worker would, and only then."""
    with enqueued.committing(execute=True):
        live(staff, t0, seconds)
    # Alerts re-check the site's presence rules too (their own task): not telemetry's concern.
    assert [task.name for task, _, _ in enqueued if task.name.startswith("enexa.telemetry")] == [
        "enexa.telemetry.tasks.recover_after_outage"
    ]
    enqueued.run_all()


def transitions(site):
    return list(SiteStatusTransition.objects.filter(site=site).values_list("online", "reason"))


@pytest.mark.django_db
def test_a_status_report_records_online_last_seen_mode_and_versions(site, staff_client):
    controller = ControllerFactory(site=site, code="CTRL001")
    response = staff_client.post(
        "/v1/status",
        {
            "site_id": "SITE001",
            "online": True,
            "controller_id": "CTRL001",
            "config_version": 5,
            "firmware_version": "2.0.5",
            "mode": "auto",
            "modbus_link_up": True,
            "buffer_depth": 0,
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["online"] is True
    shown = staff_client.get("/v1/sites/SITE001/status").json()
    assert (shown["mode"], shown["config_version"], shown["firmware_version"]) == (
        "auto",
        5,
        "2.0.5",
    )
    assert shown["controller_id"] == "CTRL001" and shown["last_seen_at"]
    controller.refresh_from_db()
    assert controller.firmware_version == "2.0.5"
    assert transitions(site) == [(True, "status")]


@pytest.mark.django_db
def test_an_older_status_report_counts_as_contact_but_does_not_overwrite_newer_state(
    site, staff, t0
):
    services.record_status(
        poster_for(staff),
        {"site_id": "SITE001", "online": True, "mode": "manual", "timestamp": format_timestamp(t0)},
    )
    services.record_status(
        poster_for(staff),
        {
            "site_id": "SITE001",
            "online": True,
            "mode": "auto",
            "timestamp": format_timestamp(t0 - timedelta(minutes=1)),
        },
    )
    assert SiteStatus.objects.get(site=site).mode == "manual"


@pytest.mark.django_db
def test_a_status_report_for_another_site_is_not_found(site, other_site):
    user = UserFactory(username="op2")
    MembershipFactory(user=user, site=other_site)
    response = jwt_client(user).post(
        "/v1/status", {"site_id": "SITE001", "online": True}, format="json"
    )
    assert response.status_code == 404
    assert not SiteStatus.objects.exists()


@pytest.mark.django_db
def test_an_invalid_status_report_has_field_errors(staff_client, site):
    response = staff_client.post(
        "/v1/status", {"site_id": "SITE001", "mode": "turbo"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"online", "mode"}


@pytest.mark.django_db
def test_a_silent_site_goes_offline_once_and_every_transition_is_kept(site, staff, t0):
    live(staff, t0, [0, 5])
    assert services.mark_offline_sites(now=t0 + timedelta(seconds=60)) == []
    assert services.mark_offline_sites(now=t0 + timedelta(seconds=130)) == ["SITE001"]
    assert services.mark_offline_sites(now=t0 + timedelta(seconds=200)) == []
    assert SiteStatus.objects.get(site=site).online is False
    live(staff, t0, [300])
    assert transitions(site) == [(True, "telemetry"), (False, "silence"), (True, "telemetry")]


@pytest.mark.django_db
def test_a_site_reads_as_offline_once_the_silence_has_passed_even_before_detection(
    site, staff_client, settings
):
    SiteStatusFactory(site=site, last_seen_at=timezone.now() - timedelta(seconds=30))
    assert staff_client.get("/v1/sites/SITE001/status").json()["online"] is True
    settings.ENEXA_OFFLINE_AFTER_S = 20
    assert staff_client.get("/v1/sites/SITE001/status").json()["online"] is False
    assert staff_client.get("/v1/sites/SITE001/telemetry/latest").json()["online"] is False


@pytest.mark.django_db
def test_detect_offline_command_marks_silent_sites(site, settings):
    SiteStatusFactory(site=site, last_seen_at=timezone.now() - timedelta(seconds=500))
    call_command("detect_offline")
    assert transitions(site) == [(False, "silence")]


@pytest.mark.django_db
def test_a_gateway_reporting_offline_is_offline_at_once(site, staff):
    services.record_status(poster_for(staff), {"site_id": "SITE001", "online": True})
    services.record_status(poster_for(staff), {"site_id": "SITE001", "online": False})
    assert transitions(site) == [(True, "status"), (False, "reported")]
    assert OutageReport.objects.filter(site=site, online_at__isnull=True).count() == 1


@pytest.mark.django_db
def test_reconnection_redelivers_valid_commands_expires_stale_ones_and_reports_the_gap(
    site, staff, t0, amperio, staff_client, enqueued
):
    live(staff, t0, [0, 5, 10, 15, 20, 25])
    services.mark_offline_sites(now=t0 + timedelta(seconds=155))
    valid = Command.objects.create(
        command_id="c-valid",
        site=site,
        command="set_battery_power",
        params={"power_kw": -25},
        issued_at=t0 + timedelta(seconds=60),
        valid_until=t0 + timedelta(hours=2),
        created_by="staff",
    )
    stale = Command.objects.create(
        command_id="c-stale",
        site=site,
        command="set_battery_power",
        params={"power_kw": 10},
        issued_at=t0 + timedelta(seconds=60),
        valid_until=t0 + timedelta(seconds=100),
        created_by="staff",
    )

    reconnect(enqueued, staff, t0, [200])  # the first live reading after the outage

    valid.refresh_from_db()
    stale.refresh_from_db()
    assert (valid.status, stale.status) == (CommandStatus.QUEUED, CommandStatus.EXPIRED)
    assert posted(amperio) == ["c-valid"]
    report = OutageReport.objects.get(site=site)
    assert report.commands_redelivered == {"delivered": 1, "expired": 1, "still_undelivered": 0}
    # Window (t0+25, t0+200) at 5 s: readings expected at t0+30 ... t0+195.
    assert (report.readings_expected, report.readings_received) == (34, 0)
    assert report.gaps == [
        {
            "from": format_timestamp(t0 + timedelta(seconds=30)),
            "to": format_timestamp(t0 + timedelta(seconds=195)),
            "missing": 34,
        }
    ]


@pytest.mark.django_db
def test_the_contact_that_brings_a_site_back_never_calls_amperio_itself(
    site, staff, t0, amperio, enqueued
):
    live(staff, t0, [0, 5])
    services.mark_offline_sites(now=t0 + timedelta(seconds=155))
    with enqueued.committing(execute=True):
        live(staff, t0, [200])
    assert amperio.requests == []
    report = OutageReport.objects.get(site=site)
    assert report.online_at is not None and report.reconciled_at is not None
    recoveries = [(t.name, args) for t, args, _ in enqueued if t.name.startswith("enexa.telemetry")]
    assert recoveries == [("enexa.telemetry.tasks.recover_after_outage", (report.pk,))]


def open_command(site, command_id, issued_at):
    """A command Amperio took before the outage (queued there), its outcome not yet known."""
    return Command.objects.create(
        command_id=command_id,
        site=site,
        command="set_battery_power",
        params={"power_kw": -25},
        issued_at=issued_at,
        valid_until=issued_at + timedelta(hours=2),
        created_by="staff",
        status=CommandStatus.QUEUED,
    )


@pytest.mark.django_db
def test_a_site_coming_back_takes_its_health_and_open_command_outcomes_from_amperio_at_once(
    site, staff, t0, amperio, enqueued
):
    controller = ControllerFactory(site=site, code="CTRL001", firmware_version="2.0.5")
    services.record_status(
        poster_for(staff),
        {"site_id": "SITE001", "online": True, "controller_id": "CTRL001", "mode": "auto"},
        now=t0,
    )
    live(staff, t0, [0, 5])
    services.mark_offline_sites(now=t0 + timedelta(seconds=155))
    applied = open_command(site, "c-applied", t0)
    waiting = open_command(site, "c-waiting", t0 + timedelta(seconds=1))
    amperio.outcomes["c-applied"] = {
        "command_id": "c-applied",
        "status": "applied",
        "registers": {"bat1_power_setpoint_kw": -12.5},
    }
    amperio.health["SITE001"] = {
        "mode": "manual",
        "config_version": 1,
        "firmware_version": "2.1.0",
        "modbus": {"link_up": False, "last_read_at": None},
        "buffer": {"depth": 1234, "readings": 1230, "events": 4},
    }

    reconnect(
        enqueued, staff, t0, [200]
    )  # the first contact after the outage, before any status report

    applied.refresh_from_db()
    waiting.refresh_from_db()
    assert (applied.status, applied.registers) == (
        CommandStatus.APPLIED,
        {"bat1_power_setpoint_kw": -12.5},
    )
    assert waiting.status == CommandStatus.QUEUED
    status = SiteStatus.objects.get(site=site)
    assert (status.mode, status.firmware_version, status.modbus_link_up, status.buffer_depth) == (
        "manual",
        "2.1.0",
        False,
        1234,
    )
    controller.refresh_from_db()
    assert controller.firmware_version == "2.1.0"
    assert controller.config_state.applied_version == 1
    report = OutageReport.objects.get(site=site)
    assert report.state_sync == {
        "health": "synced",
        "commands": {"refreshed": 2, "finished": 1, "still_open": 1},
    }
    asked = [r["path"] for r in amperio.requests if r["method"] == "GET"]
    assert asked == ["/v1/health", "/v1/dispatch/c-applied", "/v1/dispatch/c-waiting"]


@pytest.mark.django_db
def test_a_site_comes_back_even_when_amperio_does_not_answer_and_its_commands_stay_open(
    site, staff, t0, settings, enqueued
):
    settings.ENEXA_AMPERIO_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.ENEXA_AMPERIO_TOKEN = "svc-token"
    live(staff, t0, [0, 5])
    services.mark_offline_sites(now=t0 + timedelta(seconds=155))
    command = open_command(site, "c-open", t0)

    reconnect(enqueued, staff, t0, [200])

    assert SiteStatus.objects.get(site=site).online is True
    command.refresh_from_db()
    assert command.status == CommandStatus.QUEUED
    report = OutageReport.objects.get(site=site)
    assert report.state_sync == {
        "health": "unreachable",
        "commands": {"refreshed": 0, "finished": 0, "still_open": 1},
    }


@pytest.mark.django_db
def test_health_from_amperio_that_breaks_the_status_schema_changes_nothing(
    site, staff, t0, amperio, enqueued
):
    services.record_status(
        poster_for(staff), {"site_id": "SITE001", "online": True, "mode": "auto"}, now=t0
    )
    live(staff, t0, [0, 5])
    services.mark_offline_sites(now=t0 + timedelta(seconds=155))
    amperio.health["SITE001"] = {"mode": "party", "buffer": {"depth": -1}, "modbus": "up"}

    reconnect(enqueued, staff, t0, [200])

    assert SiteStatus.objects.get(site=site).mode == "auto"
    assert OutageReport.objects.get(site=site).state_sync["health"] == "invalid"


@pytest.mark.django_db
def test_backfilled_readings_update_the_outage_report_per_bucket(
    site, staff, t0, amperio, staff_client
):
    live(staff, t0, [0, 5, 10, 15, 20, 25])
    services.mark_offline_sites(now=t0 + timedelta(seconds=155))
    live(staff, t0, [200])
    backlog = [
        reading(t0 + timedelta(seconds=s), f"r-{s}", backfilled=True) for s in range(30, 105, 5)
    ]
    result = services.ingest_readings(
        poster_for(staff), {"items": backlog}, now=t0 + timedelta(seconds=210)
    )
    assert result.accepted == 15

    outages = staff_client.get("/v1/sites/SITE001/outages").json()["outages"]
    assert len(outages) == 1
    report = outages[0]
    ts = lambda s: format_timestamp(t0 + timedelta(seconds=s))  # noqa: E731
    assert (
        report["readings_expected"],
        report["readings_received"],
        report["readings_backfilled"],
        report["readings_missing"],
    ) == (34, 15, 15, 19)
    assert report["backfilled_ranges"] == [{"from": ts(30), "to": ts(100), "count": 15}]
    assert report["gaps"] == [{"from": ts(105), "to": ts(195), "missing": 19}]
    assert report["buckets"] == [
        {"start": ts(25), "expected": 11, "received": 11},
        {"start": ts(85), "expected": 12, "received": 4},
        {"start": ts(145), "expected": 11, "received": 0},
    ]
    assert (report["silent_since"], report["online_at"]) == (ts(25), ts(200))


@pytest.mark.django_db
def test_reconcile_outages_command_recomputes_reports(site, staff, t0, amperio):
    live(staff, t0, [0])
    services.mark_offline_sites(now=t0 + timedelta(seconds=150))
    live(staff, t0, [200])
    OutageReport.objects.update(readings_expected=0, gaps=[])
    call_command("reconcile_outages")
    report = OutageReport.objects.get()
    assert report.readings_expected == 39  # t0+5 ... t0+195
    assert report.gaps[0]["missing"] == 39


@pytest.mark.django_db
def test_another_sites_outages_are_not_found(site, other_site):
    user = UserFactory(username="op2")
    MembershipFactory(user=user, site=other_site)
    assert jwt_client(user).get("/v1/sites/SITE001/outages").status_code == 404
