"""Rate limits: per principal, 429 with Retry-After, batches count by size, Redis shared."""

import uuid

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from enexa.api.throttling import key_prefix, parse_rate, redis_client, reset_counters
from enexa.provisioning import services
from tests.factories import ControllerFactory

pytestmark = pytest.mark.django_db


def counted_in(backend: str, request) -> str:
    """The REDIS_URL setting for counting in this backend ("" counts in-process)."""
    return request.getfixturevalue("redis_url") if backend == "redis" else ""


def assert_counted_where_configured(redis_url: str) -> None:
    """With Redis configured the count must live there (a silent local fallback would not be
    shared between server processes)."""
    if redis_url:
        assert any(redis_client().scan_iter(match=f"{key_prefix()}:*"))


def key_client(site) -> APIClient:
    _, key = services.issue_api_key(ControllerFactory(site=site))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def initial_config_statuses(client, n) -> list[int]:
    return [client.get("/v1/provisioning/initial-config").status_code for _ in range(n)]


def test_rates_read_as_count_per_window():
    assert parse_rate("100/min") == (100, 60)
    assert parse_rate("10/5m") == (10, 300)
    assert parse_rate("3/hour") == (3, 3600)
    with pytest.raises(ValueError):
        parse_rate("lots")


@pytest.mark.parametrize("backend", ["in-process", "redis"])
def test_past_the_limit_a_controller_gets_429_with_retry_after(site, backend, request):
    redis_url = counted_in(backend, request)
    with override_settings(
        REDIS_URL=redis_url,
        ENEXA_RATE_LIMIT_PREFIX=f"test:{uuid.uuid4().hex}",
        ENEXA_RATE_LIMITS={"controller": "3/min"},
    ):
        client = key_client(site)
        statuses = [
            client.post(
                "/v1/provisioning/activate", {"status": "x", "tests_passed": False}, format="json"
            ).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        refused = client.post("/v1/provisioning/activate", {}, format="json")
        assert refused.status_code == 429
        assert 1 <= int(refused["Retry-After"]) <= 60
        assert refused["Content-Type"] == "application/problem+json"
        assert_counted_where_configured(redis_url)
        reset_counters()


def test_each_controller_has_its_own_budget(site):
    with override_settings(ENEXA_RATE_LIMITS={"controller": "2/min"}):
        first, second = key_client(site), key_client(site)
        assert [
            first.post("/v1/provisioning/activate", {}, format="json").status_code for _ in range(3)
        ][-1] == 429
        assert second.post("/v1/provisioning/activate", {}, format="json").status_code == 400


@pytest.mark.parametrize("backend", ["in-process", "redis"])
def test_a_batch_counts_its_items_so_batching_cannot_bypass_the_limit(site, backend, request):
    redis_url = counted_in(backend, request)
    with override_settings(
        REDIS_URL=redis_url,
        ENEXA_RATE_LIMIT_PREFIX=f"test:{uuid.uuid4().hex}",
        ENEXA_RATE_LIMITS={"controller": "5/min"},
    ):
        client = key_client(site)
        batch = {"items": [{"n": i} for i in range(4)]}
        assert client.post("/v1/provisioning/activate", batch, format="json").status_code == 400
        second = client.post("/v1/provisioning/activate", batch, format="json")
        assert second.status_code == 429
        # the refused batch was not counted: one more single call still fits
        assert client.post("/v1/provisioning/activate", {}, format="json").status_code == 400
        assert_counted_where_configured(redis_url)
        reset_counters()


def test_login_is_limited_harder_and_by_address(staff):
    with override_settings(ENEXA_RATE_LIMITS={"login": "2/min", "anon": "100/min"}):
        client = APIClient()
        statuses = [
            client.post(
                "/v1/auth/token", {"username": staff.username, "password": "wrong"}, format="json"
            ).status_code
            for _ in range(3)
        ]
        assert statuses == [401, 401, 429]


def test_registration_is_limited_by_address(site):
    with override_settings(ENEXA_RATE_LIMITS={"register": "2/min"}):
        client = APIClient()
        statuses = [
            client.post(
                "/v1/provisioning/register", {"serial": "x", "site_id": site.code}, format="json"
            ).status_code
            for _ in range(3)
        ]
        assert statuses == [401, 401, 429]


def test_health_is_never_limited():
    with override_settings(ENEXA_RATE_LIMITS={"anon": "1/min"}):
        client = APIClient()
        assert {client.get("/v1/health").status_code for _ in range(5)} == {200}


def test_health_reports_redis_when_it_is_configured(anon_client, redis_url):
    with override_settings(REDIS_URL=redis_url):
        assert anon_client.get("/v1/health").json()["redis"] == "ok"
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        down = anon_client.get("/v1/health")
        assert down.status_code == 200
        assert down.json() == {"status": "degraded", "database": "ok", "redis": "down"}
