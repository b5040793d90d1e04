"""Webhooks: subscribing (the secret shown once), signed deliveries a Standard Webhooks library
verifies, retries, the dead letter, manual retry, disabling a failing endpoint with an alert,
the refusal of targets inside, and site scoping of events."""

import json
import logging
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook as StandardWebhook

from enexa.alerts import services as alert_services
from enexa.alerts.models import Alert
from enexa.dispatch import services as dispatch_services
from enexa.dispatch.models import Command
from enexa.registry.choices import MemberRole
from enexa.telemetry import presence
from enexa.webhooks import services
from enexa.webhooks.choices import EVENT_TYPES
from enexa.webhooks.models import Webhook, WebhookDelivery
from enexa.webhooks.serializers import WebhookSubscriptionSerializer
from tests.conftest import controller_client, jwt_client
from tests.factories import (
    ControllerFactory,
    MembershipFactory,
    SiteStatusFactory,
    UserFactory,
)
from tests.httppeer import HttpPeer

pytestmark = pytest.mark.django_db

loopback_allowed = override_settings(ENEXA_WEBHOOK_ALLOW_PRIVATE=True)
fast_retries = override_settings(ENEXA_WEBHOOK_RETRY_SCHEDULE_S=["0.01", "0.01"])


def subscribe(client, url, events=("site.offline",), **extra):
    return client.post("/v1/webhooks", {"url": url, "events": list(events), **extra}, format="json")


def answering(*statuses):
    """A receiver handler answering `statuses` in turn (then the last one again)."""
    queue = list(statuses)

    def handler(method, path, headers, body):
        return (queue.pop(0) if len(queue) > 1 else queue[0]), {}

    return handler


def send_all(enqueued) -> None:
    """Run the enqueued send tasks as the worker would, countdowns included."""
    enqueued.run_all()


# -- subscribing ------------------------------------------------------------------------------


@loopback_allowed
def test_subscribing_reveals_the_secret_once_and_never_again(operator_client, caplog):
    caplog.set_level(logging.DEBUG)
    response = subscribe(
        operator_client, "http://127.0.0.1:9/hook", ["alert.opened", "site.offline"]
    )
    assert response.status_code == 201, response.content
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert created["events"] == ["alert.opened", "site.offline"] and created["sites"] == []
    assert created["id"].startswith("wh_")
    shown = [
        operator_client.get(f"/v1/webhooks/{created['id']}").content,
        operator_client.get("/v1/webhooks").content,
        operator_client.patch(
            f"/v1/webhooks/{created['id']}", {"events": ["site.online"]}, format="json"
        ).content,
    ]
    assert all(secret.encode() not in body and b"whsec_" not in body for body in shown)
    assert secret not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_target_on_loopback_private_or_link_local_addresses_is_refused(operator_client, url):
    response = subscribe(operator_client, url)
    assert response.status_code == 400, response.content
    assert "url" in response.json()["errors"]
    assert not Webhook.objects.exists()


def test_a_name_that_does_not_resolve_is_refused_even_where_private_targets_are_allowed(
    operator_client,
):
    with loopback_allowed:
        response = subscribe(operator_client, "https://no-such-host.invalid/hook")
    assert response.status_code == 400
    assert "does not resolve" in response.json()["errors"]["url"][0]


def test_a_public_address_and_only_http_schemes_are_accepted(operator_client):
    assert subscribe(operator_client, "https://93.184.216.34/hook").status_code == 201
    response = subscribe(operator_client, "ftp://93.184.216.34/hook")
    assert response.status_code == 400 and "url" in response.json()["errors"]


def test_unknown_events_and_sites_the_caller_does_not_operate_are_field_errors(
    operator_client, other_site
):
    response = subscribe(operator_client, "https://93.184.216.34/", ["site.exploded"])
    assert response.status_code == 400 and "events.0" in response.json()["errors"]
    response = subscribe(operator_client, "https://93.184.216.34/", sites=["SITE002"])
    assert response.status_code == 400 and "sites" in response.json()["errors"]


def test_viewers_and_controller_keys_may_not_subscribe_and_others_endpoints_are_not_found(
    site, other_site, operator_client
):
    viewer = UserFactory()
    MembershipFactory(user=viewer, site=site, role=MemberRole.VIEWER)
    assert subscribe(jwt_client(viewer), "https://93.184.216.34/").status_code == 403
    key = controller_client(ControllerFactory(site=site))
    assert subscribe(key, "https://93.184.216.34/").status_code == 403
    hook = subscribe(operator_client, "https://93.184.216.34/").json()["id"]
    stranger = UserFactory()
    MembershipFactory(user=stranger, site=other_site)
    for method in ("get", "delete"):
        assert getattr(jwt_client(stranger), method)(f"/v1/webhooks/{hook}").status_code == 404
    assert jwt_client(stranger).get(f"/v1/webhooks/{hook}/deliveries").status_code == 404
    assert jwt_client(stranger).get("/v1/webhooks").json()["webhooks"] == []
    assert operator_client.delete(f"/v1/webhooks/{hook}").status_code == 204
    assert not Webhook.objects.exists()


# -- parsing (property tests) -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["url", "events", "sites", "enabled", "other"]), json_values, max_size=5
    )
    | json_values
)
def test_the_webhook_request_parser_answers_any_json_with_values_or_field_errors(payload):
    parser = WebhookSubscriptionSerializer(data=payload)
    if parser.is_valid():
        data = parser.validated_data
        assert data["url"].split(":", 1)[0].lower() in ("http", "https")
        assert data["events"] and set(data["events"]) <= set(EVENT_TYPES)
    else:
        assert parser.errors and all(isinstance(key, str) for key in parser.errors)


@settings(max_examples=100, deadline=None)
@given(
    url=st.sampled_from(["http", "https"]).flatmap(
        lambda scheme: st.from_regex(
            r"[a-z]{1,12}\.(com|net|io)(/[a-z0-9]{0,10})?", fullmatch=True
        ).map(lambda rest: f"{scheme}://{rest}")
    ),
    events=st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=6),
    sites=st.lists(st.from_regex(r"[A-Z0-9]{1,32}", fullmatch=True), max_size=3),
)
def test_a_valid_webhook_request_parses_to_the_values_sent(url, events, sites):
    parser = WebhookSubscriptionSerializer(data={"url": url, "events": events, "sites": sites})
    assert parser.is_valid(), parser.errors
    assert dict(parser.validated_data) == {"url": url, "events": events, "sites": sites}


@settings(max_examples=100, deadline=None)
@given(message_id=st.text(min_size=1, max_size=40), data=json_values)
def test_our_signature_is_what_the_standard_webhooks_library_verifies(message_id, data):
    body = json.dumps({"type": "site.online", "data": data})  # the library decodes JSON bodies
    secret = services.new_secret()
    timestamp = int(time.time())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": services.sign(secret, message_id, timestamp, body),
    }
    StandardWebhook(secret).verify(body.encode(), headers)


# -- delivering ---------------------------------------------------------------------------------


@loopback_allowed
def test_an_event_reaches_the_receiver_signed_as_the_standard_says(site, operator, enqueued):
    with HttpPeer(answering(204)) as peer:
        webhook, secret = services.create_webhook(
            owner=operator, url=f"{peer.url}/hooks", events=["site.offline"], site_codes=None
        )
        SiteStatusFactory(site=site, last_seen_at=timezone.now() - timedelta(minutes=10))
        with enqueued.committing(execute=True):
            presence.mark_offline_sites()
        send_all(enqueued)
        [received] = peer.requests
    payload = StandardWebhook(secret).verify(received["raw"], received["headers"])
    assert payload["type"] == "site.offline"
    assert payload["data"] | {"at": None} == {"site_id": "SITE001", "at": None, "reason": "silence"}
    assert received["headers"]["webhook-id"].startswith("msg_")
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    [attempt] = delivery.attempt_log.all()
    assert (attempt.status_code, attempt.error) == (204, "")


@loopback_allowed
@fast_retries
def test_a_receiver_answering_500_gets_retries_until_it_accepts(
    site, operator, operator_client, enqueued
):
    def attempts(outcome: str) -> float:
        return REGISTRY.get_sample_value("enexa_webhook_attempts_total", {"outcome": outcome}) or 0

    before = {o: attempts(o) for o in ("http_5xx", "delivered")}
    with HttpPeer(answering(500, 503, 200)) as peer:
        webhook, secret = services.create_webhook(
            owner=operator, url=peer.url, events=["alert.opened"], site_codes=None
        )
        with enqueued.committing(execute=True):
            alert_services.open_alert("site_offline", "critical", {"x": 1}, site_pk=site.pk)
        send_all(enqueued)
        assert len(peer.requests) == 3
        ids = {r["headers"]["webhook-id"] for r in peer.requests}
        assert len(ids) == 1  # one message, retried: receivers dedupe on it
        StandardWebhook(secret).verify(peer.requests[-1]["raw"], peer.requests[-1]["headers"])
    [delivery] = operator_client.get(f"/v1/webhooks/{webhook.code}/deliveries").json()["deliveries"]
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 200]
    assert all(a["duration_ms"] >= 0 for a in delivery["attempt_log"])
    assert delivery["payload"]["data"]["rule"] == "site_offline"
    # What /metrics counts of it.
    assert attempts("http_5xx") - before["http_5xx"] == 2
    assert attempts("delivered") - before["delivered"] == 1


@loopback_allowed
@fast_retries
def test_after_the_last_attempt_a_delivery_is_a_dead_letter_that_can_be_retried_by_hand(
    site, operator, operator_client, enqueued
):
    handler = answering(500)
    with HttpPeer(lambda *args: handler(*args)) as peer:
        webhook, _ = services.create_webhook(
            owner=operator, url=peer.url, events=["site.online"], site_codes=None
        )
        with enqueued.committing(execute=True):
            presence.come_online(site.pk, timezone.now(), "status")
        send_all(enqueued)
        assert len(peer.requests) == 3  # the first try and the two of the schedule
        delivery = WebhookDelivery.objects.get(webhook=webhook)
        assert delivery.status == "dead" and delivery.next_attempt_at is None
        handler = answering(200)
        with enqueued.committing(execute=True):
            response = operator_client.post(
                f"/v1/webhooks/{webhook.code}/deliveries/{delivery.code}/retry"
            )
        assert response.status_code == 202, response.content
        send_all(enqueued)
        assert len(peer.requests) == 4
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    response = operator_client.post(f"/v1/webhooks/{webhook.code}/deliveries/{delivery.code}/retry")
    assert response.status_code == 409


@loopback_allowed
@override_settings(ENEXA_WEBHOOK_DISABLE_AFTER_S=0, ENEXA_WEBHOOK_RETRY_SCHEDULE_S=["0.01"])
def test_an_endpoint_that_keeps_failing_is_disabled_with_an_alert_until_enabled_again(
    site, operator, operator_client, enqueued
):
    with HttpPeer(answering(500)) as peer:
        webhook, _ = services.create_webhook(
            owner=operator, url=peer.url, events=["site.online"], site_codes=None
        )
        with enqueued.committing(execute=True):
            presence.come_online(site.pk, timezone.now(), "status")
        send_all(enqueued)
        assert len(peer.requests) == 1  # disabled after the first failure: no more attempts
    webhook.refresh_from_db()
    assert not webhook.enabled and "failed" in webhook.disabled_reason
    [alert] = Alert.objects.filter(rule="webhook_disabled")
    assert (alert.subject, alert.state, alert.site) == (webhook.code, "open", None)
    assert WebhookDelivery.objects.get().status == "dead"
    body = operator_client.get(f"/v1/webhooks/{webhook.code}").json()
    assert body["enabled"] is False
    response = operator_client.patch(
        f"/v1/webhooks/{webhook.code}", {"enabled": True}, format="json"
    )
    assert response.json()["enabled"] is True
    alert.refresh_from_db()
    assert alert.state == "resolved"


@loopback_allowed
@override_settings(ENEXA_WEBHOOK_TIMEOUT_S=0.3, ENEXA_WEBHOOK_RETRY_SCHEDULE_S=["3600"])
def test_a_slow_receiver_times_out_quickly_and_its_retry_is_left_to_the_sweep(
    site, operator, enqueued
):
    def slow(*args):
        time.sleep(2)
        return 200, {}

    with HttpPeer(slow) as peer:
        webhook, _ = services.create_webhook(
            owner=operator, url=peer.url, events=["site.online"], site_codes=None
        )
        with enqueued.committing(execute=True):
            presence.come_online(site.pk, timezone.now(), "status")
        send_all(enqueued)
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None and "Timeout" in attempt.error
    assert attempt.duration_ms < 1500
    assert delivery.status == "pending"
    assert delivery.next_attempt_at > timezone.now() + timedelta(minutes=45)
    assert services.send_due() == 0  # not yet due
    assert services.send_due(now=timezone.now() + timedelta(hours=2)) == 1


@loopback_allowed
def test_the_same_attempt_is_made_once_however_often_its_task_runs(site, operator):
    with HttpPeer(answering(200)) as peer:
        services.create_webhook(
            owner=operator, url=peer.url, events=["site.online"], site_codes=None
        )
        [code] = services.publish("site.online", site, {"site_id": site.code})
        assert services.send_delivery(code, 0) == "succeeded"
        assert services.send_delivery(code, 0) is None
        assert len(peer.requests) == 1


def test_at_send_time_a_name_that_now_resolves_inside_is_refused(site, operator):
    with loopback_allowed:
        webhook, _ = services.create_webhook(
            owner=operator, url="http://127.0.0.1:9/hook", events=["site.online"], site_codes=None
        )
    [code] = services.publish("site.online", site, {"site_id": site.code})
    assert services.send_delivery(code, 0) == "pending"
    [attempt] = WebhookDelivery.objects.get(code=code).attempt_log.all()
    assert attempt.status_code is None and attempt.error.startswith("Refused")


# -- which endpoints hear of what ---------------------------------------------------------------


@loopback_allowed
def test_an_operators_endpoint_hears_only_of_its_sites_and_a_site_list_narrows_further(
    site, other_site, operator, staff
):
    mine, _ = services.create_webhook(
        owner=operator, url="http://127.0.0.1:9/", events=["site.offline"], site_codes=None
    )
    everything, _ = services.create_webhook(
        owner=staff, url="http://127.0.0.1:9/", events=["site.offline"], site_codes=None
    )
    only_other, _ = services.create_webhook(
        owner=staff, url="http://127.0.0.1:9/", events=["site.offline"], site_codes=["SITE002"]
    )
    services.create_webhook(
        owner=staff, url="http://127.0.0.1:9/", events=["site.online"], site_codes=None
    )
    services.publish("site.offline", site, {})
    services.publish("site.offline", other_site, {})

    def heard(webhook):
        return sorted(d.site.code for d in WebhookDelivery.objects.filter(webhook=webhook))

    assert heard(mine) == ["SITE001"]
    assert heard(everything) == ["SITE001", "SITE002"]
    assert heard(only_other) == ["SITE002"]
    assert WebhookDelivery.objects.count() == 4


@loopback_allowed
def test_a_command_status_change_is_published_as_command_updated(site, operator, enqueued):
    services.create_webhook(
        owner=operator, url="http://127.0.0.1:9/", events=["command.updated"], site_codes=None
    )
    with enqueued.committing(execute=True):
        command, _ = dispatch_services.issue_command(
            site=site, command="set_mode", params={"mode": "auto"}, created_by="test"
        )
        dispatch_services._set(command, "rejected", "Not allowed")
        dispatch_services._set(command, "rejected", "Not allowed")  # no change: not published
    [delivery] = WebhookDelivery.objects.all()
    body = json.loads(delivery.body)
    assert body["type"] == "command.updated"
    assert body["data"]["command_id"] == command.command_id
    assert (body["data"]["status"], body["data"]["previous_status"]) == ("rejected", "undelivered")
    assert Command.objects.get().status == "rejected"


@loopback_allowed
def test_an_event_no_endpoint_subscribed_to_costs_one_query_and_builds_no_body(
    site, operator, django_assert_num_queries
):
    # A command's status changes on the worker that delivers commands: with no endpoint
    # subscribed, nothing is serialised and no membership is read.
    services.create_webhook(
        owner=operator, url="http://127.0.0.1:9/", events=["site.online"], site_codes=None
    )
    built = []

    def body() -> dict:
        built.append(1)
        return {"site_id": site.code}

    with django_assert_num_queries(1):
        assert services.publish("command.updated", site, body) == []
    assert built == []
    [code] = services.publish("site.online", site, body)
    assert built == [1]
    assert json.loads(WebhookDelivery.objects.get(code=code).body)["data"] == {"site_id": site.code}


@loopback_allowed
def test_opening_and_resolving_an_alert_publishes_both_events(site, operator, enqueued):
    services.create_webhook(
        owner=operator,
        url="http://127.0.0.1:9/",
        events=["alert.opened", "alert.resolved"],
        site_codes=None,
    )
    with enqueued.committing(execute=True):
        alert, _ = alert_services.open_alert("site_offline", "critical", {}, site_pk=site.pk)
        alert_services.resolve(alert)
    types = [json.loads(d.body)["type"] for d in WebhookDelivery.objects.order_by("pk")]
    assert types == ["alert.opened", "alert.resolved"]
    assert json.loads(WebhookDelivery.objects.last().body)["data"]["state"] == "resolved"


@loopback_allowed
def test_the_admin_shows_endpoints_and_deliveries_but_never_the_secret(
    admin_client, site, operator
):
    webhook, secret = services.create_webhook(
        owner=operator, url="http://127.0.0.1:9/", events=["site.online"], site_codes=None
    )
    [code] = services.publish("site.online", site, {"site_id": site.code})
    pages = [
        admin_client.get("/admin/webhooks/webhook/").content,
        admin_client.get(f"/admin/webhooks/webhook/{webhook.pk}/change/").content,
        admin_client.get("/admin/webhooks/webhookdelivery/").content,
    ]
    assert webhook.code.encode() in pages[0] and code.encode() in pages[2]
    assert all(secret.encode() not in page for page in pages)
