"""Rate limits of Amperio's API on a real gunicorn, counted in this process or in Redis: per
service token, per address without one, and failed authentications per address."""

import uuid

import pytest
import redis
import requests

from amperio.api.network import resolve_client_ip
from amperio.settings import parse_rate_limits, parse_service_tokens
from tests.amperio.test_amperio_api import AmperioApi

REDIS_URL = "redis://127.0.0.1:6379/4"
TOKENS = {name: "svc-" + uuid.uuid4().hex for name in ("first", "second", "third")}


@pytest.fixture(scope="module", params=["in-process", "redis"])
def api(request, tmp_path_factory):
    prefix = f"test:amperio:{uuid.uuid4().hex}"
    in_redis = request.param == "redis"
    server = AmperioApi(
        tmp_path_factory.mktemp(request.param),
        {
            "AMPERIO_SERVICE_TOKENS": ",".join(f"{n}:{t}" for n, t in TOKENS.items()),
            "AMPERIO_RATE_LIMITS": "service=3/min,anon=2/min,auth_failure=2/min",
            "AMPERIO_REDIS_URL": REDIS_URL if in_redis else "",
            "AMPERIO_RATE_LIMIT_PREFIX": prefix,
            # Each test calls as its own address behind the proxy, so their counts never mix.
            "AMPERIO_TRUSTED_PROXIES": "127.0.0.1",
        },
        # Counted in one process, the limit is exact only with one worker; in Redis, two
        # workers share every count.
        workers=2 if in_redis else 1,
    )
    server.redis_keys = lambda: redis.Redis.from_url(REDIS_URL).keys(f"{prefix}:*")
    try:
        yield server
    finally:
        server.stop()
        if in_redis:
            keys = server.redis_keys()
            if keys:
                redis.Redis.from_url(REDIS_URL).delete(*keys)


def from_address(api, address, path, token=None):
    headers = {"X-Forwarded-For": address}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(f"{api.url}{path}", headers=headers, timeout=10)


def assert_rate_limited(response):
    assert response.status_code == 429
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["status"] == 429


def test_a_service_token_past_its_limit_gets_429_with_retry_after(api):
    addresses = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    statuses = [from_address(api, a, "/v1/dispatch/nope", TOKENS["first"]) for a in addresses]
    assert [r.status_code for r in statuses] == [404, 404, 404]
    # Counted per token, whatever address it calls from; each token has its own count.
    assert_rate_limited(from_address(api, "203.0.113.4", "/v1/dispatch/nope", TOKENS["first"]))
    assert (
        from_address(api, "203.0.113.1", "/v1/dispatch/nope", TOKENS["second"]).status_code == 404
    )
    if api.env["AMPERIO_REDIS_URL"]:
        assert any(b":service:token:first" in key for key in api.redis_keys())


def test_calls_without_a_token_are_limited_per_address(api):
    address = "203.0.113.10"
    assert [from_address(api, address, "/v1/docs/").status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(from_address(api, address, "/v1/docs/"))
    assert from_address(api, "203.0.113.11", "/v1/docs/").status_code == 200


def test_failed_authentication_is_limited_per_address_even_for_a_correct_token(api):
    address = "203.0.113.20"
    wrong = [from_address(api, address, "/v1/dispatch/x", "svc-wrong") for _ in range(2)]
    assert [r.status_code for r in wrong] == [401, 401]
    assert_rate_limited(from_address(api, address, "/v1/dispatch/x", "svc-wrong"))
    # No token is a failed authentication too, and once past the limit a right guess is no use.
    assert_rate_limited(from_address(api, address, "/v1/dispatch/x"))
    assert_rate_limited(from_address(api, address, "/v1/dispatch/x", TOKENS["third"]))
    assert from_address(api, "203.0.113.21", "/v1/dispatch/x", TOKENS["third"]).status_code == 404


def test_health_is_never_rate_limited(api):
    assert all(from_address(api, "203.0.113.30", "/v1/health").ok for _ in range(4))


def test_the_forwarded_for_header_is_believed_only_from_a_trusted_proxy():
    trusted = ("127.0.0.1/32", "10.0.0.0/8")
    assert resolve_client_ip("192.0.2.1", "203.0.113.5", trusted) == "192.0.2.1"
    assert resolve_client_ip("127.0.0.1", "203.0.113.5", trusted) == "203.0.113.5"
    assert resolve_client_ip("127.0.0.1", "203.0.113.5, 10.1.1.1", trusted) == "203.0.113.5"
    assert resolve_client_ip("127.0.0.1", "garbage", trusted) == "127.0.0.1"
    assert resolve_client_ip("127.0.0.1", "", ()) == "127.0.0.1"


def test_rate_limits_and_tokens_are_read_from_the_environment_and_checked_at_start():
    assert parse_rate_limits("service=10/5m,anon=none")["service"] == (10, 300)
    assert parse_rate_limits("anon=none")["anon"] is None
    with pytest.raises(ValueError, match="unknown scope"):
        parse_rate_limits("everyone=1/s")
    with pytest.raises(ValueError, match="rate"):
        parse_rate_limits("service=lots")
    old, named, expiring = parse_service_tokens("abc, enexa:def, enexa-2:ghi:2030-01-01T00:00:00Z")
    assert (old.name, old.secret, old.expires_at) == ("token1", "abc", None)
    assert (named.name, named.secret) == ("enexa", "def")
    assert expiring.expires_at.isoformat() == "2030-01-01T00:00:00+00:00"
    assert "ghi" not in repr(expiring)
    with pytest.raises(ValueError, match="enexa-3") as refused:
        parse_service_tokens("enexa-3:s3cret:next tuesday")
    assert "s3cret" not in str(refused.value)
