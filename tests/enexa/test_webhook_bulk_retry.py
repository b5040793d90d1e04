"""Retrying many dead letters at once (the API's `POST /v1/webhooks/{id}/deliveries/retry` and
the admin's action): only dead letters get one more attempt, on the worker and never in the
request, each queued once however often the same set is retried; other deliveries are counted
as skipped; another owner's endpoint is not found; bad input is a 400 naming the field that
changes nothing."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enexa.registry.choices import MemberRole
from enexa.registry.models import SiteMembership
from enexa.webhooks import services, tasks
from enexa.webhooks.models import WebhookDelivery
from enexa.webhooks.serializers import BulkRetrySerializer
from tests.conftest import controller_client, jwt_client
from tests.enexa.test_webhooks import answering
from tests.factories import ControllerFactory, MembershipFactory, SiteFactory, UserFactory
from tests.hostile import hostile_json, hostile_text
from tests.httppeer import HttpPeer

pytestmark = pytest.mark.django_db

loopback_allowed = override_settings(ENEXA_WEBHOOK_ALLOW_PRIVATE=True)
# One attempt and no retries: a failed first attempt makes a dead letter at once.
one_attempt = override_settings(ENEXA_WEBHOOK_RETRY_SCHEDULE_S=[])
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Receiver:
    """An HttpPeer whose answer the test changes (failing first, then fixed), and the
    operator's endpoint for site.online at it."""

    def __init__(self):
        self.handler = answering(500)
        self.peer = HttpPeer(lambda *args: self.handler(*args))

    def fixed(self):
        self.handler = answering(200)

    def received(self) -> list[str]:
        """The `webhook-id` of each request, in order."""
        return [r["headers"]["webhook-id"] for r in self.peer.requests]


@pytest.fixture
def receiver(operator):
    receiver = Receiver()
    with loopback_allowed, receiver.peer:
        receiver.webhook, _ = services.create_webhook(
            owner=operator, url=receiver.peer.url, events=["site.online"], site_codes=None
        )
        yield receiver


def endpoint(owner, path: str = "/"):
    """An endpoint of `owner` for site.online that nothing here sends to."""
    with loopback_allowed:
        webhook, _ = services.create_webhook(
            owner=owner, url=f"http://127.0.0.1:9{path}", events=["site.online"], site_codes=None
        )
    return webhook


def deliveries(site, count: int, *, start=T0) -> list[str]:
    """`count` deliveries of a site.online event each, one minute apart from `start`."""
    return [
        code
        for n in range(count)
        for code in services.publish(
            "site.online", site, {"n": n}, now=start + timedelta(minutes=n)
        )
    ]


@one_attempt
def dead_letters(site, count: int, **kwargs) -> list[str]:
    """`count` deliveries the receiver refused: each a dead letter after its one attempt."""
    codes = deliveries(site, count, **kwargs)
    for code in codes:
        assert services.send_delivery(code, 0) == "dead"
    return codes


def statuses(codes) -> dict[str, tuple[str, int]]:
    """code -> (status, attempts)."""
    rows = WebhookDelivery.objects.filter(code__in=codes)
    return {d.code: (d.status, d.attempts) for d in rows}


def bulk_retry(client, webhook, body=None):
    return client.post(f"/v1/webhooks/{webhook.code}/deliveries/retry", body, format="json")


def fan_out(enqueued) -> list[tuple]:
    """Run the queued fan-out messages as the worker would; returns the (code, attempts done)
    of each send_delivery task they queued, not run."""
    sends = []
    while enqueued:
        task, args, _ = enqueued.pop(0)
        if task.name == tasks.send_requeued.name:
            task.run(*args)
        else:
            sends.append(args)
    return sends


# -- the API -----------------------------------------------------------------------------------


def test_every_dead_letter_gets_one_more_attempt_on_the_worker_and_the_answer_counts_them(
    site, operator_client, receiver, enqueued
):
    dead = dead_letters(site, 3)
    [succeeded] = deliveries(site, 1, start=T0 + timedelta(hours=1))
    receiver.fixed()
    assert services.send_delivery(succeeded, 0) == "succeeded"
    [pending] = deliveries(site, 1, start=T0 + timedelta(hours=2))
    before = len(receiver.received())
    with enqueued.committing(execute=True):
        response = bulk_retry(operator_client, receiver.webhook)
    assert response.status_code == 202, response.content
    assert response.json() == {"retried": 3, "skipped": 2}
    # Queued, not sent: nothing reached the receiver inside the request.
    assert len(receiver.received()) == before
    assert statuses(dead) == {code: ("pending", 1) for code in dead}
    enqueued.run_all()  # the worker
    assert sorted(receiver.received()[before:]) == sorted(dead)
    assert statuses(dead) == {code: ("succeeded", 2) for code in dead}
    assert statuses([succeeded, pending]) == {succeeded: ("succeeded", 1), pending: ("pending", 0)}
    for code in dead:
        log = WebhookDelivery.objects.get(code=code).attempt_log.all()
        assert [a.status_code for a in log] == [500, 200]


def test_a_dead_letter_that_fails_again_is_a_dead_letter_again_after_its_one_attempt(
    site, operator_client, receiver, enqueued
):
    [code] = dead_letters(site, 1)
    with enqueued.committing(execute=True):
        assert bulk_retry(operator_client, receiver.webhook).json()["retried"] == 1
    with one_attempt:
        enqueued.run_all()
    assert receiver.received() == [code, code]
    assert statuses([code]) == {code: ("dead", 2)}


def test_retrying_the_same_dead_letters_twice_queues_each_attempt_once(
    site, operator_client, receiver, enqueued
):
    dead = dead_letters(site, 2)
    receiver.fixed()
    with enqueued.committing(execute=True):
        first = bulk_retry(operator_client, receiver.webhook)
    with enqueued.committing(execute=True):
        again = bulk_retry(operator_client, receiver.webhook)
    assert first.json() == {"retried": 2, "skipped": 0}
    assert again.json() == {"retried": 0, "skipped": 2}  # pending now: left alone
    sends = fan_out(enqueued)
    assert sorted(sends) == sorted((code, 1) for code in dead)
    # Even a send message delivered twice makes one attempt: the claim on its number.
    for code, done in sends + sends:
        tasks.send_delivery.run(code, done)
    assert sorted(receiver.received()) == sorted(dead * 2)  # the first attempt and this
    assert statuses(dead) == {code: ("succeeded", 2) for code in dead}


def test_the_body_narrows_the_retry_to_ids_and_to_a_creation_time_range(
    site, operator_client, receiver, enqueued
):
    dead = dead_letters(site, 5)  # created T0, T0+1 min, ... T0+4 min
    [succeeded] = deliveries(site, 1, start=T0 + timedelta(minutes=2, seconds=30))
    receiver.fixed()
    services.send_delivery(succeeded, 0)
    with enqueued.committing(execute=True):
        ids = [dead[0], succeeded, dead[0]]
        by_ids = bulk_retry(operator_client, receiver.webhook, {"ids": ids})
    assert by_ids.json() == {"retried": 1, "skipped": 1}
    with enqueued.committing(execute=True):
        in_range = bulk_retry(
            operator_client,
            receiver.webhook,
            {"status": "dead", "from": "2026-12-01T12:01:00Z", "to": "2026-12-01T13:03:00+01:00"},
        )
    # [12:01, 12:03): dead[1], dead[2] and the succeeded one of 12:02:30.
    assert in_range.json() == {"retried": 2, "skipped": 1}
    with enqueued.committing(execute=True):
        narrowed = {"ids": [dead[3], dead[4]], "to": "2026-12-01T12:04:00Z"}
        both = bulk_retry(operator_client, receiver.webhook, narrowed)
    assert both.json() == {"retried": 1, "skipped": 0}
    retried = {d for d, (status, _) in statuses(dead).items() if status == "pending"}
    assert retried == {dead[0], dead[1], dead[2], dead[3]}
    assert sorted(code for code, _ in fan_out(enqueued)) == sorted(retried)


def test_another_owners_endpoint_is_not_found_and_only_its_managers_may_retry(
    site, other_site, operator, operator_client, enqueued
):
    webhook = endpoint(operator)
    [code] = deliveries(site, 1)
    WebhookDelivery.objects.filter(code=code).update(status="dead")
    stranger = UserFactory()
    MembershipFactory(user=stranger, site=other_site)
    # The operator's endpoint: a viewer of its site neither sees nor retries it.
    viewer = UserFactory()
    MembershipFactory(user=viewer, site=site, role=MemberRole.VIEWER)
    key = controller_client(ControllerFactory(site=site))
    for client in (jwt_client(stranger), jwt_client(viewer), key):
        single = client.post(f"/v1/webhooks/{webhook.code}/deliveries/{code}/retry")
        bulk = bulk_retry(client, webhook)
        assert (single.status_code, bulk.status_code) == (404, 404), bulk.content
        assert code.encode() not in bulk.content
    # An owner who is an operator no longer (a viewer now) may not retry: 403 as for one.
    SiteMembership.objects.filter(user=operator).update(role=MemberRole.VIEWER)
    single = operator_client.post(f"/v1/webhooks/{webhook.code}/deliveries/{code}/retry")
    assert (single.status_code, bulk_retry(operator_client, webhook).status_code) == (403, 403)
    assert statuses([code]) == {code: ("dead", 0)}
    assert not enqueued


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "pending"}, "status"),
        ({"status": None}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-12-01T12:00:00"}, "to"),  # no offset
        ({"from": 1764590400}, "from"),
        ({"from": "2026-12-01T13:00:00Z", "to": "2026-12-01T12:00:00Z"}, "from"),
        ({"ids": []}, "ids"),
        ({"ids": "msg_1"}, "ids"),
        ({"ids": [""]}, "ids.0"),
        ({"ids": ["msg_" + "0" * 60]}, "ids.0"),
        ({"ids": ["msg_unknown"]}, "ids"),
        ({"delivery_ids": ["msg_x"]}, "delivery_ids"),  # misspelt: never "every dead letter"
        ([], "non_field_errors"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field_and_changes_nothing(
    site, operator, operator_client, enqueued, body, field
):
    webhook = endpoint(operator)
    codes = deliveries(site, 2)
    WebhookDelivery.objects.filter(code__in=codes).update(status="dead")
    with enqueued.committing(execute=True):
        response = bulk_retry(operator_client, webhook, body)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"], response.json()
    assert statuses(codes) == {code: ("dead", 0) for code in codes}
    assert not enqueued


def test_another_endpoints_delivery_is_an_unknown_id(site, operator, operator_client, enqueued):
    mine, other = endpoint(operator, "/a"), endpoint(operator, "/b")
    deliveries(site, 1)  # one to each endpoint
    WebhookDelivery.objects.update(status="dead")
    theirs = WebhookDelivery.objects.get(webhook=other).code
    response = bulk_retry(operator_client, mine, {"ids": [theirs]})
    assert response.status_code == 400
    assert response.json()["errors"] == {"ids": [f"No delivery {theirs} of this endpoint."]}
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"dead"}


# -- the parser (property tests) ---------------------------------------------------------------


FIELDS = ["status", "ids", "from", "to"]
# Bodies near the valid ones and far from them: the fields with hostile values (text with NUL
# or lone surrogates, calendar edges, huge numbers, lists of those), other keys, not objects.
bodies = (
    st.dictionaries(
        st.sampled_from(FIELDS) | hostile_text,
        hostile_json | st.lists(hostile_text, max_size=4) | st.just("dead"),
        max_size=4,
    )
    | hostile_json
)


def check_parsed(parser: BulkRetrySerializer) -> None:
    """Values of the documented shape, or errors keyed by field name."""
    if parser.is_valid():
        data = parser.validated_data
        assert data["status"] == "dead" and set(data) <= set(FIELDS)
        assert all(isinstance(code, str) and 0 < len(code) <= 40 for code in data.get("ids", []))
        assert all(data[name].tzinfo is not None for name in ("from", "to") if name in data)
        if "from" in data and "to" in data:
            assert data["from"] < data["to"]
    else:
        assert parser.errors and all(isinstance(key, str) for key in parser.errors)


@settings(max_examples=300, deadline=None)
@given(bodies)
def test_the_bulk_retry_parser_answers_any_json_with_values_or_field_errors(payload):
    check_parsed(BulkRetrySerializer(data=payload))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bodies)
def test_any_bulk_retry_body_is_answered_202_or_400_and_a_400_changes_nothing(
    site, operator, operator_client, enqueued, payload
):
    if not WebhookDelivery.objects.exists():  # made in the first example
        endpoint(operator)
        deliveries(site, 2)
    webhook = WebhookDelivery.objects.first().webhook
    WebhookDelivery.objects.update(status="dead")
    operator_client.raise_request_exception = False
    enqueued.clear()
    with enqueued.committing(execute=True):
        response = operator_client.generic(
            "POST",
            f"/v1/webhooks/{webhook.code}/deliveries/retry",
            json.dumps(payload, ensure_ascii=True),  # a lone surrogate travels as \ud800
            content_type="application/json",
        )
    assert response.status_code in (202, 400), response.content
    left_dead = WebhookDelivery.objects.filter(status="dead").count()
    if response.status_code == 400:
        assert response["Content-Type"] == "application/problem+json"
        assert response.json().get("errors"), response.content
        assert left_dead == 2 and not enqueued
    else:
        assert response.json()["retried"] == 2 - left_dead


timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=100, deadline=None)
@given(
    ids=st.none()
    | st.lists(st.from_regex(r"msg_[0-9a-f]{24}", fullmatch=True), min_size=1, max_size=20),
    start=st.none() | timestamps,
    length=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400)),
)
def test_a_valid_bulk_retry_request_parses_to_the_values_sent(ids, start, length):
    body: dict = {"status": "dead"} if ids is None else {"ids": ids}
    if start is not None:
        body["from"] = start.isoformat()
        if start + length < datetime(9998, 12, 31, tzinfo=UTC):
            body["to"] = (start + length).isoformat().replace("+00:00", "Z")
    parser = BulkRetrySerializer(data=body)
    assert parser.is_valid(), parser.errors
    expected = {"status": "dead"}
    if ids is not None:
        expected["ids"] = ids
    if start is not None:
        expected["from"] = start
        if "to" in body:
            expected["to"] = start + length
    assert dict(parser.validated_data) == expected


# -- the admin ---------------------------------------------------------------------------------


def test_the_admin_action_retries_the_selected_dead_letters_and_says_how_many_were_skipped(
    admin_client, site, receiver, enqueued
):
    dead = dead_letters(site, 3)
    [pending] = deliveries(site, 1, start=T0 + timedelta(hours=1))
    receiver.fixed()
    chosen = WebhookDelivery.objects.filter(code__in=[dead[0], dead[1], pending])
    with enqueued.committing(execute=True):
        response = admin_client.post(
            "/admin/webhooks/webhookdelivery/",
            {"action": "retry_dead_letters", "_selected_action": [d.pk for d in chosen]},
            follow=True,
        )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Retry selected dead letters" in text
    assert "2 dead letter(s) queued for one more attempt; 1 other" in text
    before = len(receiver.received())
    enqueued.run_all()
    assert sorted(receiver.received()[before:]) == sorted(dead[:2])
    assert statuses([*dead, pending]) == {
        dead[0]: ("succeeded", 2),
        dead[1]: ("succeeded", 2),
        dead[2]: ("dead", 1),
        pending: ("pending", 0),
    }


# -- concurrency (PostgreSQL) ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_bulk_retries_at_the_same_moment_queue_each_dead_letter_once(enqueued):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's in-memory test database does not take concurrent writers")
    site = SiteFactory(code="SITE060")
    owner = UserFactory()
    MembershipFactory(user=owner, site=site)
    webhook = endpoint(owner)
    codes = deliveries(site, 20)
    WebhookDelivery.objects.filter(code__in=codes).update(status="dead")
    enqueued.clear()  # the first sends publishing queued (committed at once here)
    results: dict[str, int] = {}
    errors: list[Exception] = []
    first_done, release = threading.Event(), threading.Event()

    def retry(name: str, hold: bool) -> None:
        try:
            with transaction.atomic():
                done = services.retry_dead_letters(
                    WebhookDelivery.objects.filter(webhook=webhook), user=owner
                )
                results[name] = done.retried
                if hold:  # the first keeps its transaction open while the second starts
                    first_done.set()
                    release.wait(30)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            first_done.set()
        finally:
            connection.close()

    first = threading.Thread(target=retry, args=("first", True))
    first.start()
    first_done.wait(30)
    second = threading.Thread(target=retry, args=("second", False))
    second.start()
    time.sleep(0.5)  # the second now waits on the rows the first locked
    release.set()
    for thread in (first, second):
        thread.join(timeout=60)
    assert not errors
    assert results == {"first": 20, "second": 0}
    assert sorted(fan_out(enqueued)) == sorted((code, 0) for code in codes)
