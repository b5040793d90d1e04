"""Handing a site back to manual control (`DELETE /v1/sites/{site_id}/plan`): the gateway
stops following the plan at once, no trigger re-plans the site, and the next dispatched plan
takes control again."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from enexa.audit.models import AuditEntry
from enexa.configs.services import update_site_config
from enexa.dispatch.choices import CommandStatus
from enexa.dispatch.models import Command
from enexa.optimizer import services, tasks
from enexa.optimizer.choices import PlanReason
from enexa.optimizer.models import Plan, PlanRelease
from enexa.registry.choices import MemberRole
from enexa.telemetry.outages import recover_site
from tests.conftest import controller_client, jwt_client
from tests.enexa.test_optimizer import add_reading, hourly_prices, outage_until, replans
from tests.factories import ControllerFactory, MembershipFactory, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def priced(equipped_site):
    """SITE001 with hourly prices from an hour ago for two days."""
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    services.replace_prices(equipped_site, hourly_prices(hour - timedelta(hours=1), 48))
    return equipped_site


@pytest.fixture
def controlled(priced):
    """SITE001 with a dispatched plan in force now (its schedule not delivered yet)."""
    return services.create_plan(priced, now=timezone.now() - timedelta(minutes=1))


def release(client, enqueued):
    with enqueued.committing(execute=True):
        return client.delete("/v1/sites/SITE001/plan")


def test_an_operator_releases_the_site_and_the_gateway_gets_an_idle_schedule_at_once(
    controlled, operator_client, enqueued
):
    enqueued.clear()
    response = release(operator_client, enqueued)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"site_id", "released_at", "released_by", "command_id"}
    assert body["site_id"] == "SITE001" and body["released_by"] == "user:operator"
    released_at = datetime.fromisoformat(body["released_at"])
    command = Command.objects.get(command_id=body["command_id"])
    # One 0 kW slot covering the release (from a slot before it, for a gateway clock behind)
    # to the released plan's end: it replaces the plan's schedule on the gateway and its
    # current slot's setpoints as it is applied.
    assert command.command == "apply_schedule"
    [slot] = command.params["slots"]
    assert slot["power_kw"] == 0.0
    assert datetime.fromisoformat(slot["start"]) == released_at - timedelta(minutes=15)
    assert datetime.fromisoformat(slot["end"]) == controlled.end_at == command.valid_until
    assert command.status == CommandStatus.UNDELIVERED
    assert [args for t, args, _ in enqueued if "deliver" in t.name] == [(command.command_id,)]
    # The plan's own schedule, not delivered yet, never reaches the site after the release.
    superseded = Command.objects.get(command_id=controlled.command_id)
    assert superseded.status == CommandStatus.EXPIRED and "release" in superseded.detail
    [stored] = PlanRelease.objects.all()
    assert (stored.released_by, stored.command_id) == ("user:operator", command.command_id)
    assert not services.is_controlled(controlled.site_id)
    audited = AuditEntry.objects.get(method="DELETE", path="/v1/sites/SITE001/plan")
    assert (audited.principal, audited.status_code) == ("user:operator", 200)


def test_after_a_release_there_is_no_plan_in_force(controlled, staff_client, enqueued):
    assert staff_client.get("/v1/sites/SITE001/plan").status_code == 200
    assert release(staff_client, enqueued).status_code == 200
    response = staff_client.get("/v1/sites/SITE001/plan")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert staff_client.get("/v1/sites/SITE001/plan/actual").status_code == 404
    # The plans stay listed, for history.
    listed = staff_client.get("/v1/sites/SITE001/plans").json()["plans"]
    assert [p["id"] for p in listed] == [controlled.code]


def test_a_released_site_is_re_planned_by_no_trigger(controlled, staff_client, enqueued, settings):
    site = controlled.site
    ControllerFactory(site=site)
    release(staff_client, enqueued)
    enqueued.clear()
    later = timezone.now() + timedelta(hours=1)
    # scheduled: not due, and the beat fans out nothing
    assert services.sites_due(now=later) == []
    assert tasks.replan_due_sites.run() == 0
    assert services.replan_fleet(now=later) == {"planned": 0, "skipped": 0}
    # prices and configuration enqueue nothing
    with enqueued.committing(execute=True):
        services.replace_prices(site, hourly_prices(timezone.now(), 2, price=0.5))
        update_site_config(site, {"grid": {"limit_kw": 300}}, if_match=None, by="t")
    assert replans(enqueued) == []
    # SOC drift: far off the released plan, and not checked
    settings.ENEXA_OPTIMIZER_SOC_DRIFT_PCT = 5.0
    add_reading(site, timezone.now(), soc=99.0)
    assert services.check_drift() == []
    # a re-plan task already queued before the release does nothing
    for reason in PlanReason.values:
        assert services.replan_site(site.pk, reason) is None
    # reconnect: the outage's recovery plans nothing
    report = recover_site(outage_until(site, timezone.now()), now=timezone.now())
    assert "replanned" not in report.commands_redelivered
    assert Plan.objects.count() == 1


def test_a_re_plan_solved_before_the_release_but_stored_after_it_is_dropped(
    controlled, staff_client, enqueued
):
    release(staff_client, enqueued)
    commands = Command.objects.count()
    # What a re-plan that passed its check before the release finds once it holds the lock.
    with pytest.raises(services.NotControlled):
        services.create_plan(controlled.site, reason=PlanReason.SCHEDULED, require_control=True)
    assert Plan.objects.count() == 1 and Command.objects.count() == commands


def test_a_new_dispatched_plan_takes_control_again(controlled, operator_client, enqueued):
    site = controlled.site
    release(operator_client, enqueued)
    what_if = operator_client.post("/v1/sites/SITE001/plans", {"dispatch": False}, format="json")
    assert what_if.status_code == 201
    assert not services.is_controlled(site.pk)  # a plan not dispatched changes nothing
    with enqueued.committing(execute=True):
        response = operator_client.post("/v1/sites/SITE001/plans", {}, format="json")
    assert response.status_code == 201, response.json()
    assert services.is_controlled(site.pk)
    assert services.controlled_site_pks() == [site.pk]
    assert operator_client.get("/v1/sites/SITE001/plan").json()["id"] == response.json()["id"]
    later = timezone.now() + timedelta(hours=1)
    assert services.sites_due(now=later) == [site.pk]
    made = services.replan_site(site.pk, PlanReason.SCHEDULED)
    assert made is not None and made.dispatched
    # and it may be released again
    assert release(operator_client, enqueued).status_code == 200
    assert PlanRelease.objects.count() == 2


def test_a_plan_stored_after_the_release_takes_control_whatever_its_clock_said(
    controlled, staff_client, enqueued
):
    # An operator's plan, solved from a moment before another operator's release and stored
    # after it, is what the gateway follows (its schedule came last): the site is controlled.
    before = datetime.fromisoformat(release(staff_client, enqueued).json()["released_at"])
    plan = services.create_plan(controlled.site, now=before - timedelta(seconds=30))
    assert services.is_controlled(controlled.site_id)
    assert services.controlled_site_pks() == [controlled.site_id]
    assert staff_client.get("/v1/sites/SITE001/plan").json()["id"] == plan.code


def test_releasing_a_site_not_under_control_is_a_404(priced, staff_client, enqueued):
    never = staff_client.delete("/v1/sites/SITE001/plan")
    assert never.status_code == 404
    assert never["Content-Type"] == "application/problem+json"
    services.create_plan(priced, dispatch=False)
    assert staff_client.delete("/v1/sites/SITE001/plan").status_code == 404
    services.create_plan(priced)
    assert release(staff_client, enqueued).status_code == 200
    again = staff_client.delete("/v1/sites/SITE001/plan")
    assert again.status_code == 404 and PlanRelease.objects.count() == 1


def test_a_viewer_and_a_controller_key_may_not_release_and_other_sites_are_not_found(
    controlled, enqueued
):
    site = controlled.site
    viewer = UserFactory()
    MembershipFactory(user=viewer, site=site, role=MemberRole.VIEWER)
    assert jwt_client(viewer).delete("/v1/sites/SITE001/plan").status_code == 403
    key = controller_client(ControllerFactory(site=site))
    assert key.delete("/v1/sites/SITE001/plan").status_code == 403
    elsewhere = UserFactory()
    MembershipFactory(user=elsewhere, site=SiteFactory(code="SITE002"))
    assert jwt_client(elsewhere).delete("/v1/sites/SITE001/plan").status_code == 404
    assert not PlanRelease.objects.exists()
    assert services.is_controlled(site.pk)


def test_control_is_read_in_one_query_however_many_sites(
    controlled, staff_client, enqueued, django_assert_num_queries
):
    for n in range(3):
        other = SiteFactory(code=f"SITE1{n}")
        plan = Plan.objects.get(pk=controlled.pk)
        plan.pk, plan.code, plan.site = None, f"plan_copy_{n}", other
        plan.save()
        if n == 0:
            PlanRelease.objects.create(
                site=other,
                plan_version=plan.version,
                released_at=timezone.now(),
                released_by="t",
                command_id="c",
            )
    with django_assert_num_queries(1):
        pks = services.controlled_site_pks()
    assert len(pks) == 3 and controlled.site_id in pks
    with django_assert_num_queries(1):
        assert services.is_controlled(controlled.site_id)
    release(staff_client, enqueued)
    with django_assert_num_queries(1):
        assert len(services.controlled_site_pks()) == 2


@override_settings(ENEXA_WEBHOOK_ALLOW_PRIVATE=True)
def test_a_release_is_published_to_webhooks_as_plan_released(
    controlled, operator, operator_client, enqueued
):
    from enexa.webhooks import services as webhooks
    from enexa.webhooks.models import WebhookDelivery

    webhooks.create_webhook(
        owner=operator, url="http://127.0.0.1:9/", events=["plan.released"], site_codes=None
    )
    answer = release(operator_client, enqueued).json()
    [delivery] = WebhookDelivery.objects.all()
    body = json.loads(delivery.body)
    assert body["type"] == "plan.released" and body["data"] == answer
