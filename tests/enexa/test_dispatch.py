"""Enexa's dispatch: commands are validated, stored and answered at once, delivered once to
Amperio by the worker's task (its body run here), and followed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from enexa.dispatch import services, tasks
from enexa.dispatch.choices import CommandStatus, DeliveryOutcome
from enexa.dispatch.models import Command, DeliveryAttempt
from tests.conftest import controller_client, jwt_client
from tests.factories import ControllerFactory, MembershipFactory, UserFactory
from tests.httppeer import HttpPeer


@pytest.fixture
def amperio(settings):
    """A real HTTP server standing in for Amperio's dispatch API."""
    state = {"answer": (202, None), "commands": {}}

    def handle(method, path, headers, body):
        if headers.get("authorization") != "Bearer svc-token":
            return 401, {"title": "Unauthorized"}
        if method == "POST":
            status, answer = state["answer"]
            state["commands"][body["command_id"]] = body
            answer = answer or {"command_id": body["command_id"], "status": "queued"}
            return status, answer, state.get("headers", {})
        command_id = path.rsplit("/", 1)[-1]
        return 200, {
            "command_id": command_id,
            "status": "applied",
            "registers": {"bat1_power_setpoint_kw": -12.5},
        }

    with HttpPeer(handle) as peer:
        settings.ENEXA_AMPERIO_URL = peer.url
        settings.ENEXA_AMPERIO_TOKEN = "svc-token"
        peer.state = state
        yield peer


def post_command(client, site_code="SITE001", **body):
    body = {"command": "set_battery_power", "params": {"power_kw": -25}, **body}
    return client.post(f"/v1/sites/{site_code}/commands", body, format="json")


@pytest.fixture
def dispatch(enqueued):
    """POST a command, commit, then run the delivery the view enqueued; returns the answer of
    the POST and the command as the worker left it."""

    def post(client, **body):
        with enqueued.committing(execute=True):
            response = post_command(client, **body)
        enqueued.run_all()
        command = Command.objects.filter(command_id=response.json().get("command_id")).first()
        return response, command

    return post


@pytest.mark.django_db
def test_dispatching_stores_the_command_answers_202_and_enqueues_its_delivery_after_commit(
    staff_client, site, amperio, enqueued
):
    with enqueued.committing(execute=False) as callbacks:
        response = post_command(staff_client, command_id="cmd-9")
    assert response.status_code == 202
    assert response.json()["status"] == "undelivered"
    assert amperio.requests == [] and enqueued == []  # nothing is sent before the commit
    for callback in callbacks:
        callback()
    assert [(task.name, args) for task, args, _ in enqueued] == [
        (tasks.deliver_command.name, ("cmd-9",))
    ]


@pytest.mark.django_db
def test_staff_dispatches_a_command_and_amperio_receives_the_contract_shape(
    staff_client, site, amperio, dispatch
):
    response, command = dispatch(staff_client)
    assert response.status_code == 202, response.json()
    assert command.status == "queued"
    attempt = DeliveryAttempt.objects.get(command=command)
    assert (attempt.outcome, attempt.http_status, attempt.error) == ("accepted", 202, "")
    sent = amperio.requests[0]
    assert sent["path"] == "/v1/dispatch"
    assert sent["body"]["site_id"] == "SITE001"
    assert sent["body"]["command"] == "set_battery_power"
    assert sent["body"]["params"] == {"power_kw": -25.0}
    assert {"timestamp", "command_id"} <= sent["body"].keys()


@pytest.mark.django_db
def test_replaying_a_command_id_delivers_it_once(staff_client, site, amperio, dispatch):
    first, _ = dispatch(staff_client, command_id="cmd-1")
    again, _ = dispatch(staff_client, command_id="cmd-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert len(amperio.requests) == 1
    assert Command.objects.count() == 1


@pytest.mark.django_db
def test_reusing_a_command_id_for_another_command_is_refused(staff_client, site, amperio):
    post_command(staff_client, command_id="cmd-1")
    response = post_command(staff_client, command_id="cmd-1", params={"power_kw": 50})
    assert response.status_code == 422
    assert Command.objects.get().params == {"power_kw": -25.0}


@pytest.mark.django_db
def test_invalid_params_are_refused_with_field_errors_and_nothing_is_sent(
    staff_client, site, amperio
):
    response = post_command(
        staff_client, command="set_charger_power_limit", params={"limit_kw": -1}
    )
    assert response.status_code == 400
    assert {"params.charger_id", "params.limit_kw"} <= response.json()["errors"].keys()
    assert amperio.requests == [] and Command.objects.count() == 0


@pytest.mark.django_db
def test_amperio_rejecting_a_command_records_why_and_is_not_retried(
    staff_client, site, amperio, dispatch
):
    amperio.state["answer"] = (
        400,
        {"title": "Invalid input", "detail": "power_kw -500 exceeds the limit of 220 kW"},
    )
    _, command = dispatch(staff_client, params={"power_kw": -500})
    assert command.status == "rejected"
    assert "220 kW" in command.detail
    attempt = command.attempts.get()
    assert (attempt.outcome, attempt.http_status) == (DeliveryOutcome.REJECTED, 400)
    assert services.retry_countdown_s(services.deliver(command), 0) is None


@pytest.mark.django_db
@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_a_transient_failure_is_recorded_and_retried_with_growing_backoff(
    staff_client, site, amperio, dispatch, status, settings
):
    settings.ENEXA_DELIVERY_BACKOFF_S = 2
    settings.ENEXA_DELIVERY_MAX_RETRIES = 3
    amperio.state["answer"] = (status, {"title": "Unavailable"})
    _, command = dispatch(staff_client)
    assert command.status == CommandStatus.UNDELIVERED
    attempt = command.attempts.get()
    assert (attempt.outcome, attempt.http_status) == (DeliveryOutcome.UNAVAILABLE, status)
    delivery = services.Delivery(command, transient=True)
    assert 1 <= services.retry_countdown_s(delivery, 0) <= 2
    assert 4 <= services.retry_countdown_s(delivery, 2) <= 8
    # Retries spent: the periodic redelivery takes the command over.
    assert services.retry_countdown_s(delivery, 3) is None


@pytest.mark.django_db
def test_the_delivery_task_asks_to_retry_no_sooner_than_amperios_retry_after(
    site, amperio, monkeypatch
):
    amperio.state["answer"] = (503, {"title": "Busy"})
    amperio.state["headers"] = {"Retry-After": "120"}
    command, _ = services.issue_command(
        site=site, command="set_grid_limit", params={"limit_kw": 300}, created_by="t"
    )
    asked = []

    def retry(**options):
        asked.append(options)
        return RuntimeError("retry")

    monkeypatch.setattr(tasks.deliver_command, "retry", retry)
    with pytest.raises(RuntimeError):
        tasks.deliver_command.run(command.command_id)
    assert asked and asked[0]["countdown"] >= 120
    assert command.attempts.get().outcome == DeliveryOutcome.UNAVAILABLE


@pytest.mark.django_db
def test_the_delivery_task_skips_a_command_delivered_meanwhile(site, amperio):
    command, _ = services.issue_command(
        site=site, command="set_grid_limit", params={"limit_kw": 300}, created_by="t"
    )
    tasks.deliver_command.run(command.command_id)
    tasks.deliver_command.run(command.command_id)  # a redelivered message
    tasks.deliver_command.run("no-such-command")
    assert len(amperio.requests) == 1
    assert command.attempts.count() == 1


@pytest.mark.django_db
def test_the_periodic_status_pull_records_what_became_of_open_commands(
    staff_client, site, amperio, dispatch
):
    _, command = dispatch(staff_client)
    assert command.status == CommandStatus.QUEUED
    assert tasks.pull_command_status.run() == {"refreshed": 1, "finished": 1}
    command.refresh_from_db()
    assert (command.status, command.registers) == ("applied", {"bat1_power_setpoint_kw": -12.5})


def undelivered(site, command_id, now, valid_for=timedelta(minutes=30)):
    command, _ = services.issue_command(
        site=site,
        command="set_grid_limit",
        params={"limit_kw": 300},
        created_by="test",
        command_id=command_id,
        valid_until=now + valid_for,
        now=now,
    )
    return command


@pytest.mark.django_db
def test_an_unreachable_amperio_leaves_the_command_undelivered_for_redelivery(
    staff_client, site, settings, dispatch
):
    settings.ENEXA_AMPERIO_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.ENEXA_AMPERIO_TOKEN = "svc-token"
    _, command = dispatch(staff_client, command_id="late-1")
    assert command.status == "undelivered"
    attempt = command.attempts.get()
    assert (attempt.outcome, attempt.http_status) == (DeliveryOutcome.UNREACHABLE, None)
    assert attempt.error == "ConnectionError"
    with HttpPeer(lambda *a: (202, {"command_id": "late-1", "status": "queued"})) as peer:
        settings.ENEXA_AMPERIO_URL = peer.url
        counts = services.redeliver_undelivered(site)
    assert counts == {"delivered": 1, "expired": 0, "still_undelivered": 0}
    assert Command.objects.get().status == CommandStatus.QUEUED


@pytest.mark.django_db
def test_a_command_whose_validity_ran_out_while_undelivered_expires(site, settings):
    settings.ENEXA_AMPERIO_URL = "http://127.0.0.1:9"
    settings.ENEXA_AMPERIO_TOKEN = "svc-token"
    now = timezone.now()
    command = undelivered(site, "late-2", now, valid_for=timedelta(minutes=5))
    counts = services.redeliver_undelivered(site, now=now + timedelta(minutes=6))
    assert counts["expired"] == 1
    command.refresh_from_db()
    assert command.status == CommandStatus.EXPIRED


@pytest.mark.django_db
def test_the_periodic_redelivery_waits_one_timeout_at_most_and_delivers_once_amperio_answers(
    site, other_site, settings
):
    from io import StringIO

    from django.core.management import call_command

    settings.ENEXA_AMPERIO_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.ENEXA_AMPERIO_TOKEN = "svc-token"
    now = timezone.now()
    first = undelivered(site, "c-1", now)
    second = undelivered(other_site, "c-2", now + timedelta(seconds=1))
    stale = undelivered(site, "c-3", now + timedelta(seconds=2), valid_for=timedelta(minutes=1))

    counts = services.redeliver_undelivered(now=now + timedelta(minutes=2))
    assert counts == {"delivered": 0, "expired": 1, "still_undelivered": 2}
    attempts = {c.command_id: c.delivery_attempts for c in Command.objects.all()}
    # A try for the oldest; the next waits without its own timeout; the stale expires.
    assert attempts == {"c-1": 1, "c-2": 0, "c-3": 0}
    stale.refresh_from_db()
    assert stale.status == CommandStatus.EXPIRED

    with HttpPeer(lambda m, p, h, body: (202, {"command_id": body["command_id"]})) as peer:
        settings.ENEXA_AMPERIO_URL = peer.url
        out = StringIO()
        call_command("redeliver_commands", stdout=out)
    assert "delivered 2, expired 0, still undelivered 0" in out.getvalue()
    assert sorted(r["body"]["command_id"] for r in peer.requests) == ["c-1", "c-2"]
    for command in (first, second):
        command.refresh_from_db()
        assert command.status == CommandStatus.QUEUED


@pytest.mark.django_db
def test_following_a_command_pulls_its_outcome_from_amperio(staff_client, site, amperio, dispatch):
    command_id = dispatch(staff_client)[0].json()["command_id"]
    response = staff_client.get(f"/v1/commands/{command_id}")
    assert response.json()["status"] == "applied"
    assert response.json()["registers"] == {"bat1_power_setpoint_kw": -12.5}


@pytest.mark.django_db
def test_only_staff_and_the_sites_operators_dispatch(site, other_site, amperio):
    viewer = UserFactory(username="viewer")
    MembershipFactory(user=viewer, site=site, role="viewer")
    assert post_command(jwt_client(viewer)).status_code == 403
    outsider = UserFactory(username="outsider")
    MembershipFactory(user=outsider, site=other_site)
    assert post_command(jwt_client(outsider)).status_code == 404
    operator = UserFactory(username="op")
    MembershipFactory(user=operator, site=site, role="operator")
    assert post_command(jwt_client(operator)).status_code == 202


@pytest.mark.django_db
def test_a_controller_key_cannot_dispatch_even_to_its_own_site(site, amperio):
    assert post_command(controller_client(ControllerFactory(site=site))).status_code == 403
    assert amperio.requests == [] and Command.objects.count() == 0


@pytest.mark.django_db
def test_another_sites_command_is_not_found(site, other_site, amperio, staff_client):
    command_id = post_command(staff_client).json()["command_id"]
    outsider = UserFactory(username="outsider")
    MembershipFactory(user=outsider, site=other_site)
    assert jwt_client(outsider).get(f"/v1/commands/{command_id}").status_code == 404
    listing = jwt_client(outsider).get("/v1/sites/SITE001/commands")
    assert listing.status_code == 404


@pytest.mark.django_db
def test_a_site_amperio_refuses_does_not_hold_up_another_sites_redelivery(
    site, other_site, settings
):
    now = timezone.now()
    undelivered(site, "s1-a", now)
    undelivered(site, "s1-b", now + timedelta(seconds=1))
    undelivered(other_site, "s2-a", now + timedelta(seconds=2))

    def handle(method, path, headers, body):
        if body["site_id"] == "SITE001":
            return 503, {"title": "Site queue unavailable"}
        return 202, {"command_id": body["command_id"], "status": "queued"}

    with HttpPeer(handle) as peer:
        settings.ENEXA_AMPERIO_URL = peer.url
        settings.ENEXA_AMPERIO_TOKEN = "svc-token"
        counts = tasks.redeliver_commands.run()
    assert counts == {"delivered": 1, "expired": 0, "still_undelivered": 2}
    # SITE001's second command waits for the next run; the other site's is delivered.
    assert [r["body"]["command_id"] for r in peer.requests] == ["s1-a", "s2-a"]


@pytest.mark.django_db
def test_the_admin_shows_a_commands_delivery_attempts(admin_client, site, amperio):
    command, _ = services.issue_command(
        site=site, command="set_grid_limit", params={"limit_kw": 300}, created_by="t"
    )
    tasks.deliver_command.run(command.command_id)
    page = admin_client.get(f"/admin/dispatch/command/{command.pk}/change/")
    assert page.status_code == 200
    assert "Accepted by Amperio" in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("answer", "evaluated"),
    [((202, None), False), ((400, {"title": "Invalid input", "detail": "Too much."}), True)],
)
def test_only_a_failed_outcome_queues_the_command_failed_rule_on_the_delivering_worker(
    staff_client, site, amperio, enqueued, answer, evaluated
):
    # Every delivery (undelivered -> queued) used to queue an alert evaluation on the worker
    # that delivers, ahead of the next site's delivery; only a failure can open the alert.
    amperio.state["answer"] = answer
    with enqueued.committing(execute=True):
        post_command(staff_client, command_id="cmd-alert")
    [(delivery, args, _)] = enqueued
    enqueued.clear()
    with enqueued.committing(execute=True):
        delivery.run(*args)
    assert Command.objects.get(command_id="cmd-alert").status == (
        "rejected" if evaluated else "queued"
    )
    names = [task.name for task, _, _ in enqueued]
    assert ("enexa.alerts.tasks.evaluate_site" in names) is evaluated
