"""The gateways' telemetry fast path (enexa.telemetry.fastpath) answers exactly as the full
Django stack does: the same status, body and headers, the same rows stored and audited, the
same limits; and every request it does not handle reaches the full stack untouched.

Requests go through enexa.wsgi's application, as gunicorn sends them, once with the fast path
and once without (ENEXA_INGEST_FAST_PATH off), and the two answers are compared."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from django.core import signals
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enexa.api import throttling
from enexa.audit.models import AuditEntry
from enexa.provisioning import keycache
from enexa.provisioning.models import ApiKey
from enexa.provisioning.services import issue_api_key, revoke_api_keys
from enexa.telemetry.models import BatteryUnitValue, ChargerValue, TelemetryReading
from enexa.wsgi import application
from tests.enexa.test_telemetry_ingest import T0, reading
from tests.factories import ControllerFactory
from tests.hostile import hostile_json

pytestmark = pytest.mark.django_db

# Headers whose value differs from one call to the next whatever path answers.
VARYING = {"x-request-id", "content-length"}


@pytest.fixture
def api_key(site):
    controller = ControllerFactory(site=site, code="CTRL001")
    return issue_api_key(controller)[1]


@pytest.fixture
def full_stack_calls(monkeypatch):
    """How many requests reached Django's middleware chain."""
    calls = []
    real = BaseHandler.get_response

    def counting(self, request):
        calls.append(request.path)
        return real(self, request)

    monkeypatch.setattr(BaseHandler, "get_response", counting)
    return calls


def call(body, api_key: str | None = None, **environ) -> tuple[int, dict[str, str], object]:
    """POST `body` to /v1/telemetry through the WSGI application; (status, headers, JSON)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/telemetry",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "10.1.2.3",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(raw)),
    }
    if api_key is not None:
        env["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    env.update(environ)
    started: dict = {}

    def start_response(status, headers, exc_info=None):
        started["status"] = int(status.split()[0])
        started["headers"] = {name.lower(): value for name, value in headers}

    # As Django's test client does: the test's transaction must survive the request signals.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        response = application(env, start_response)
        content = b"".join(response)
        response.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    try:
        data = json.loads(content)
    except ValueError:
        data = content  # Django's own HTML pages (an unknown host)
    return started["status"], started["headers"], data


def both_ways(make_body, api_key, **environ):
    """The answers of the fast path and of the full stack to the same request; `make_body(n)`
    gives each its own body (two readings, so the second is not a duplicate of the first)."""
    fast = call(make_body(1), api_key, **environ)
    with override_settings(ENEXA_INGEST_FAST_PATH=False):
        full = call(make_body(2), api_key, **environ)
    return fast, full


def same_answer(fast, full) -> None:
    assert fast[0] == full[0]
    assert fast[2] == full[2]
    assert fast[1].keys() == full[1].keys()
    assert {k: v for k, v in fast[1].items() if k not in VARYING} == {
        k: v for k, v in full[1].items() if k not in VARYING
    }


def test_a_gateways_reading_is_answered_stored_and_audited_as_by_the_full_stack(
    equipped_site, api_key, full_stack_calls
):
    fast, full = both_ways(
        lambda n: reading(T0 + timedelta(seconds=n), message_id=f"m-{n}"), api_key
    )
    same_answer(fast, full)
    assert fast[0] == 201 and fast[2] == {
        "accepted": 1,
        "duplicate": 0,
        "rejected": 0,
        "errors": [],
    }
    assert full_stack_calls == ["/v1/telemetry"]  # the second call only
    assert fast[1]["x-request-id"] and fast[1]["x-request-id"] != full[1]["x-request-id"]
    assert TelemetryReading.objects.count() == 2
    assert BatteryUnitValue.objects.count() == 4 and ChargerValue.objects.count() == 2
    # The first call was the site's first contact (it came online): bookkeeping, not a change.
    audited = list(
        AuditEntry.objects.order_by("id").values(
            "principal", "source_ip", "method", "path", "query", "status_code", "changes"
        )
    )
    assert audited[0] == audited[1]
    assert audited[0]["principal"] == "controller:CTRL001"
    assert audited[0]["status_code"] == 201


def test_a_duplicate_and_a_batch_with_a_rejected_item_are_answered_alike(
    equipped_site, api_key, full_stack_calls
):
    call(reading(message_id="dup"), api_key)
    fast, full = both_ways(lambda n: reading(message_id="dup"), api_key)
    same_answer(fast, full)
    assert fast[0] == 200 and fast[2]["duplicate"] == 1

    def batch(n):
        good = reading(T0 + timedelta(seconds=10 + n), message_id=f"b-{n}")
        bad = reading(T0, message_id="bad", grid={"import_kw": "lots"})
        return {"items": [good, bad]}

    fast, full = both_ways(batch, api_key)
    same_answer(fast, full)
    assert fast[0] == 201 and fast[2]["rejected"] == 1
    assert fast[2]["errors"][0]["errors"].keys() == {"grid.import_kw"}
    # Each call audited once, with the status it was answered (the fast path's entry is written
    # by the statement that stores the readings).
    statuses = list(AuditEntry.objects.order_by("id").values_list("status_code", flat=True))
    assert statuses == [201, 200, 200, 201, 201]


@pytest.mark.parametrize(
    ("case", "body", "environ"),
    [
        ("every item rejected", {"site_id": "SITE001"}, {}),
        ("malformed JSON", b'{"site_id": ', {}),
        ("NaN", b'{"site_id": "SITE001", "timestamp": NaN}', {}),
        ("not UTF-8", b'{"site_id": "\xff"}', {}),
        ("an envelope that is not a batch", b"[1, 2]", {}),
        ("a foreign site", {**reading(), "site_id": "NOPE"}, {}),
        ("text/plain", {}, {"CONTENT_TYPE": "text/plain"}),
        ("no key", {}, {"HTTP_AUTHORIZATION": ""}),
        ("a wrong key", {}, {"HTTP_AUTHORIZATION": "Bearer enx_nope.nope"}),
        ("another method", {}, {"REQUEST_METHOD": "PUT"}),
        ("an unknown host", {}, {"HTTP_HOST": "evil.example"}),
        ("a chunked body", {}, {"CONTENT_LENGTH": ""}),
        ("an Accept it cannot serve", {}, {"HTTP_ACCEPT": "text/html"}),
    ],
)
def test_what_the_fast_path_leaves_gets_the_full_stacks_answer_and_writes_nothing(
    equipped_site, api_key, full_stack_calls, case, body, environ
):
    payload = body or reading(message_id="x")
    fast, full = both_ways(lambda n: payload, api_key, **environ)
    assert full_stack_calls == ["/v1/telemetry", "/v1/telemetry"], case
    same_answer(fast, full)
    assert fast[0] >= 400, case
    assert not TelemetryReading.objects.exists()


def test_a_post_with_a_query_string_is_left_to_the_full_stack(
    equipped_site, api_key, full_stack_calls
):
    fast, full = both_ways(
        lambda n: reading(T0 + timedelta(seconds=n), message_id=f"q-{n}"),
        api_key,
        QUERY_STRING="x=1",
    )
    same_answer(fast, full)
    assert fast[0] == 201 and len(full_stack_calls) == 2


def test_a_revoked_key_is_refused_at_once(equipped_site, site, api_key):
    assert call(reading(message_id="a"), api_key)[0] == 201
    revoke_api_keys(site.controllers.get())
    status, _, body = call(reading(message_id="b"), api_key)
    assert status == 401 and body["status"] == 401
    assert TelemetryReading.objects.count() == 1


@override_settings(
    ENEXA_RATE_LIMITS={"controller": "2/min", "auth_failure": "1000/min", "user": None}
)
def test_a_call_left_to_the_full_stack_counts_once_against_the_rate_limit(equipped_site, api_key):
    assert call({"site_id": "SITE001"}, api_key)[0] == 400  # counted by the fast path only
    assert call(reading(message_id="a"), api_key)[0] == 201
    status, headers, body = call(reading(message_id="b"), api_key)
    assert status == 429 and body["status"] == 429 and int(headers["retry-after"]) >= 1
    assert TelemetryReading.objects.count() == 1


@override_settings(
    ENEXA_RATE_LIMITS={"controller": "1000/min", "auth_failure": "2/min", "user": None}
)
def test_an_address_over_its_failed_authentications_is_refused_even_with_a_good_key(
    equipped_site, api_key
):
    for _ in range(2):
        assert call(reading(), "enx_nope.nope")[0] == 401
    status, _, body = call(reading(message_id="a"), api_key)
    assert status == 429 and body["status"] == 429
    assert not TelemetryReading.objects.exists()
    # Another address is not affected.
    assert call(reading(message_id="a"), api_key, REMOTE_ADDR="10.9.9.9")[0] == 201


def test_an_empty_batch_is_answered_and_audited_as_by_the_full_stack(
    equipped_site, api_key, full_stack_calls
):
    fast, full = both_ways(lambda n: {"items": []}, api_key)
    same_answer(fast, full)
    assert fast[0] == 200 and full_stack_calls == ["/v1/telemetry"]
    assert list(AuditEntry.objects.values_list("status_code", flat=True)) == [200, 200]


def _mutated_reading(field: str, value) -> bytes:
    body = reading(message_id=None)
    body[field] = value
    return json.dumps(body).encode()


# What a gateway (or anyone holding its key) could send: any bytes, any JSON, and readings
# with one field replaced by a hostile value.
ANY_BODY = st.one_of(
    st.binary(max_size=200),
    hostile_json.map(lambda value: json.dumps(value).encode()),
    st.builds(
        _mutated_reading,
        st.sampled_from(["timestamp", "site_id", "message_id", "battery", "grid", "chargers"]),
        hostile_json,
    ),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=ANY_BODY)
def test_any_body_never_gets_a_500_and_an_error_is_the_full_stacks(equipped_site, api_key, body):
    fast = call(body, api_key)
    with override_settings(ENEXA_INGEST_FAST_PATH=False):
        full = call(body, api_key)
    assert fast[0] < 500 and full[0] < 500
    if fast[0] >= 400:  # the fast path left it to the full stack, which answered the same
        assert (fast[0], fast[2]) == (full[0], full[2])


# --- with Redis: the key cache on, and a cached key's checks in one round trip ----------------


@pytest.fixture
def with_redis(redis_url):
    keycache.clear()
    with override_settings(REDIS_URL=redis_url):
        throttling.reset_counters()
        yield redis_url
        throttling.reset_counters()
    keycache.clear()


@pytest.fixture
def usual_steps(monkeypatch):
    """How many posts took the usual steps (two Redis round trips) instead of one."""
    calls = []
    real = throttling.refuse_after_auth_failures

    def counting(request, **kwargs):
        calls.append(request.path)
        return real(request, **kwargs)

    monkeypatch.setattr(throttling, "refuse_after_auth_failures", counting)
    return calls


@override_settings(
    ENEXA_RATE_LIMITS={"controller": "3/min", "auth_failure": "1000/min", "user": None}
)
def test_a_cached_key_is_checked_and_counted_in_one_round_trip_exactly_once(
    equipped_site, api_key, with_redis, usual_steps, full_stack_calls
):
    statuses = [call(reading(message_id=f"m-{n}"), api_key)[0] for n in range(4)]
    assert statuses == [201, 201, 201, 429]
    assert usual_steps == ["/v1/telemetry"]  # the first post only, which cached the key
    assert full_stack_calls == ["/v1/telemetry"]  # the 429
    assert TelemetryReading.objects.count() == 3
    assert list(AuditEntry.objects.order_by("id").values_list("status_code", flat=True)) == [
        201,
        201,
        201,
        429,
    ]


def test_with_redis_the_fast_path_answers_as_the_full_stack(equipped_site, api_key, with_redis):
    call(reading(message_id="warm"), api_key)
    fast, full = both_ways(
        lambda n: reading(T0 + timedelta(seconds=n), message_id=f"m-{n}"), api_key
    )
    same_answer(fast, full)
    assert fast[0] == 201 and TelemetryReading.objects.count() == 3


@override_settings(
    ENEXA_RATE_LIMITS={"controller": "2/min", "auth_failure": "1000/min", "user": None}
)
def test_a_key_revoked_by_another_process_is_refused_at_once_and_not_counted(
    equipped_site, site, api_key, with_redis
):
    assert call(reading(message_id="a"), api_key)[0] == 201  # cached here
    # Another process revokes it: the database row and Redis's generation change, while this
    # process still holds the row it cached.
    with keycache.unchanged():
        ApiKey.objects.update(revoked_at=timezone.now())
    keycache._redis(with_redis).set(keycache.generation_key(), uuid.uuid4().hex)
    status, _, body = call(reading(message_id="b"), api_key)
    assert status == 401 and body["status"] == 401
    assert TelemetryReading.objects.count() == 1
    # The refused call was not counted against the controller: a new key still has one call.
    fresh = issue_api_key(site.controllers.get())[1]
    assert call(reading(message_id="c"), fresh)[0] == 201
    assert call(reading(message_id="d"), fresh)[0] == 429


@override_settings(ENEXA_RATE_LIMITS={"controller": "2/min", "auth_failure": "2/min", "user": None})
def test_an_address_over_its_failed_authentications_is_refused_with_a_cached_key(
    equipped_site, api_key, with_redis
):
    assert call(reading(message_id="a"), api_key)[0] == 201  # cached here
    for _ in range(2):
        assert call(reading(), "enx_nope.nope")[0] == 401
    status, _, body = call(reading(message_id="b"), api_key)
    assert status == 429 and body["status"] == 429
    assert TelemetryReading.objects.count() == 1
    # Not counted against the controller either: from another address it has one call left.
    assert call(reading(message_id="c"), api_key, REMOTE_ADDR="10.9.9.9")[0] == 201
    assert call(reading(message_id="d"), api_key, REMOTE_ADDR="10.9.9.9")[0] == 429


def test_a_cached_key_is_served_when_redis_goes_away(equipped_site, api_key, with_redis):
    assert call(reading(message_id="a"), api_key)[0] == 201  # cached here
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        assert call(reading(message_id="b"), api_key)[0] == 201
    assert TelemetryReading.objects.count() == 2
