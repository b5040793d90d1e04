"""Amperio's API as every kind of caller, on a real gunicorn: the access matrix (every URL x
no token, wrong token, expired token, valid token, disallowed address), token expiry and
rotation, the IP allowlist behind a trusted proxy, and the audit row of each call."""

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import requests
from django.urls import URLResolver
from django.views.generic import RedirectView

import amperio.api.urls
from amperio.api.audit import REDACTED, AuditCall, AuditLog
from shared.fields import format_timestamp
from tests.amperio.test_amperio_api import AmperioApi, dispatch
from tests.lifetimes import stopped_at_end

VALID, EXPIRED, BARE = ("svc-" + uuid.uuid4().hex for _ in range(3))
NOW = datetime.now(UTC)
TOKENS = ",".join(
    [
        f"enexa-old:{EXPIRED}:{format_timestamp(NOW - timedelta(hours=1))}",
        f"enexa-new:{VALID}:{format_timestamp(NOW + timedelta(days=30))}",
        BARE,  # the format from before names and expiry: named by its position
    ]
)
# nginx on the same host is the trusted proxy; callers reach the API through it.
ALLOWED_CALLER, DISALLOWED_CALLER = "203.0.113.7", "198.51.100.7"
# /metrics too while no AMPERIO_METRICS_TOKEN is set (its token: test_metrics_and_logs.py).
PUBLIC = {"v1/health", "v1/health/", "v1/schema/", "v1/docs/", "v1/redoc/", "metrics"}
# The docs pages typed without their slash redirect to them (followed here, as browsers do).
REDIRECTS = {"v1/schema", "v1/docs", "v1/redoc"}
METHODS = ("get", "post", "put", "patch", "delete")


def served_endpoints() -> list[tuple[str, str]]:
    """(route, method) for every URL Amperio's API serves, found by walking its URL patterns,
    so a new endpoint is in the matrix without being named here."""

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.callback

    endpoints = []
    for route, callback in walk(amperio.api.urls.urlpatterns, ""):
        view_class = callback.view_class
        methods = ("get",) if issubclass(view_class, RedirectView) else METHODS
        endpoints += [(route, m) for m in methods if hasattr(view_class, m)]
    return endpoints


ENDPOINTS = served_endpoints()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server = AmperioApi(
        tmp_path_factory.mktemp("guarded"),
        {
            "AMPERIO_SERVICE_TOKENS": TOKENS,
            "AMPERIO_API_IP_ALLOWLIST": "127.0.0.1/32, 203.0.113.0/24",
            "AMPERIO_TRUSTED_PROXIES": "127.0.0.1",
            # The matrix fails authentication often from one address; limits have their tests.
            "AMPERIO_RATE_LIMITS": "auth_failure=none",
        },
    )
    yield from stopped_at_end(server)


def call(api, method, route, token=None, caller=ALLOWED_CALLER, query=""):
    """`route` with its parameter filled in, as `caller` behind the proxy, with `token`."""
    command_id = "cmd-" + uuid.uuid4().hex
    path = "/" + route.replace("<str:command_id>", api.known_command)
    headers = {"X-Forwarded-For": caller}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = dispatch(command_id) if method == "post" else None
    response = requests.request(
        method, f"{api.url}{path}{query}", json=body, headers=headers, timeout=10
    )
    response.command_id = command_id
    return response


@pytest.fixture(scope="module", autouse=True)
def known_command(api):
    api.known_command = "cmd-known-" + uuid.uuid4().hex
    assert api.post(dispatch(api.known_command), token=VALID).status_code == 202


def expected(route, method, caller):
    """The status each kind of caller gets."""
    if caller == "disallowed address":
        return 403
    if route in PUBLIC | REDIRECTS:
        return 200
    if caller != "valid token":
        return 401
    return 202 if method == "post" else 200


CALLERS = {
    "no token": (None, ALLOWED_CALLER),
    "wrong token": ("svc-" + uuid.uuid4().hex, ALLOWED_CALLER),
    "expired token": (EXPIRED, ALLOWED_CALLER),
    "valid token": (VALID, ALLOWED_CALLER),
    "disallowed address": (VALID, DISALLOWED_CALLER),
}
MATRIX = [(route, method, caller) for route, method in ENDPOINTS for caller in CALLERS]


def test_the_matrix_covers_every_url_of_the_api():
    assert {route for route, _ in ENDPOINTS} == {
        "v1/dispatch",
        "v1/dispatch/<str:command_id>",
        *PUBLIC,
        *REDIRECTS,
    }


@pytest.mark.parametrize(("route", "method", "caller"), MATRIX, ids=[" ".join(m) for m in MATRIX])
def test_every_url_answers_each_kind_of_caller_as_expected(api, route, method, caller):
    token, address = CALLERS[caller]
    response = call(api, method, route, token, address)
    assert response.status_code == expected(route, method, caller), response.text
    if response.status_code >= 400:
        assert response.headers["Content-Type"].startswith("application/problem+json")
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_is_told_apart_from_a_wrong_one(api):
    expired = call(api, "get", "v1/dispatch/<str:command_id>", EXPIRED)
    assert expired.status_code == 401
    assert expired.json()["detail"] == "Service token expired."
    wrong = call(api, "get", "v1/dispatch/<str:command_id>", "svc-wrong")
    assert wrong.json()["detail"] == "Invalid service token."


def test_during_a_rotation_the_new_and_the_unnamed_old_format_token_both_work(api):
    for token in (VALID, BARE):
        assert call(api, "post", "v1/dispatch", token).status_code == 202


def test_a_forwarded_address_is_believed_only_as_the_hop_the_proxy_saw(api):
    # The client put the allowed address first; the proxy appended the real one.
    forged = f"{ALLOWED_CALLER}, {DISALLOWED_CALLER}"
    assert call(api, "get", "v1/health", caller=forged).status_code == 403
    assert call(api, "get", "v1/health", caller=f"{DISALLOWED_CALLER}, {ALLOWED_CALLER}").ok


def audit_rows(api) -> list[dict]:
    return AuditLog(api.state_dir / "audit.sqlite3").entries(limit=10_000)


def test_each_call_leaves_an_audit_row_with_caller_address_and_command(api):
    accepted = call(api, "post", "v1/dispatch", VALID)
    assert accepted.status_code == 202
    (row,) = [r for r in audit_rows(api) if r["command_id"] == accepted.command_id]
    assert row["caller"] == "enexa-new"
    assert row["source_ip"] == ALLOWED_CALLER
    assert (row["method"], row["path"], row["status"]) == ("POST", "/v1/dispatch", 202)
    datetime.fromisoformat(row["created_at"])  # a timestamp
    asked = call(api, "get", "v1/dispatch/<str:command_id>", BARE)
    assert asked.status_code == 200
    row = next(r for r in audit_rows(api) if r["caller"] == "token3")
    assert row["command_id"] == api.known_command


def test_refused_calls_are_audited_too(api):
    call(api, "post", "v1/dispatch", VALID, DISALLOWED_CALLER)
    call(api, "post", "v1/dispatch", EXPIRED)
    rows = audit_rows(api)
    assert any(r["source_ip"] == DISALLOWED_CALLER and r["status"] == 403 for r in rows)
    assert any(r["caller"] == "anonymous" and r["status"] == 401 for r in rows)


def test_no_token_secret_is_ever_written_to_the_audit_log(api):
    # A token pasted into the query string or the URL is masked.
    call(api, "get", "v1/health", query=f"?access_token={VALID}&page=2")
    requests.get(f"{api.url}/v1/dispatch/{VALID}", headers={"Authorization": f"Bearer {VALID}"})
    rows = audit_rows(api)
    assert any(r["query"] == urlencode({"access_token": REDACTED, "page": "2"}) for r in rows)
    assert any(r["path"] == f"/v1/dispatch/{REDACTED}" for r in rows)
    stored = b"".join(p.read_bytes() for p in api.state_dir.glob("audit.sqlite3*"))
    for secret in (VALID, EXPIRED, BARE):
        assert secret.encode() not in stored


def test_old_audit_rows_are_pruned_by_the_command_line_after_the_retention(tmp_path):
    log = AuditLog(tmp_path / "audit.sqlite3")
    for age_days in (400, 40, 1):
        log.record(
            AuditCall("anonymous", "127.0.0.1", "GET", "/v1/health", "", 200, None, 0),
            (),
            now=datetime.now(UTC) - timedelta(days=age_days),
        )
    env = {**os.environ, "AMPERIO_STATE_DIR": str(tmp_path), "AMPERIO_AUDIT_RETENTION_DAYS": "365"}
    prune = [sys.executable, "-m", "amperio", "prune-audit"]
    subprocess.run(prune, env=env, check=True, capture_output=True)
    assert len(log.entries()) == 2
    subprocess.run([*prune, "--days", "30"], env=env, check=True, capture_output=True)
    assert len(log.entries()) == 1
