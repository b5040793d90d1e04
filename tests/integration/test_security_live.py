"""Provisioning and the guards on every call, against a live Enexa (gunicorn) over HTTP."""

from __future__ import annotations

import json
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from amperio.procs import Proc, free_port, wait_until
from demo.enexa import LiveEnexa, enexa_database, run_manage
from tests.integration.tcpproxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


class Caller:
    """requests with a count of the API calls made and every error body kept."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.calls = 0
        self.error_bodies: list[str] = []

    def __call__(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("http") else self.base_url + path
        response = requests.request(method, url, headers=headers, timeout=10, **kwargs)
        self.calls += 1
        if response.status_code >= 400:
            self.error_bodies.append(response.text)
        return response


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("security-live")
    with enexa_database(tmp_path) as database_url:
        enexa = LiveEnexa(database_url, tmp_path, extra_env={"REDIS_URL": ""})
        try:
            yield enexa
        finally:
            enexa.stop()


@pytest.fixture(scope="module")
def issued_secrets() -> list[str]:
    return []


def provision(live, call, issued, serial: str) -> dict:
    """Staff create an enrollment secret; the gateway registers with it."""
    staff = live.staff_token()
    issued.extend([live.admin_password, staff])
    enrollment = call(
        "POST", "/v1/sites/SITE001/enrollment-tokens", staff, json={"uses": 1, "ttl_s": 600}
    )
    assert enrollment.status_code == 201, enrollment.text
    secret = enrollment.json()["secret"]
    issued.append(secret)
    registered = call(
        "POST", "/v1/provisioning/register", secret, json={"serial": serial, "site_id": "SITE001"}
    )
    assert registered.status_code == 201, registered.text
    body = registered.json()
    issued.append(body["api_key"])
    return {"staff": staff, "secret": secret, **body}


def test_a_gateway_is_provisioned_in_three_calls_over_http(live, issued_secrets):
    call = Caller(live.url)
    gateway = provision(live, call, issued_secrets, "CP-DEMO-0001")
    assert gateway["controller_id"] == "CTRL001"  # the demo's pre-registered controller
    key = gateway["api_key"]

    used_up = call(
        "POST",
        "/v1/provisioning/register",
        gateway["secret"],
        json={"serial": "CP-OTHER", "site_id": "SITE001"},
    )
    assert used_up.status_code == 401

    initial = call("GET", gateway["config_url"], key)
    assert initial.status_code == 200, initial.text
    assert {"version", "settings", "limits"} <= initial.json()["config"].keys()
    assert initial.json()["assets"]

    not_ready = call(
        "POST",
        "/v1/provisioning/activate",
        key,
        json={"status": "ready", "tests_passed": False, "detail": "no modbus"},
    )
    assert not_ready.json()["activated"] is False
    detail = call("GET", "/v1/controllers/CTRL001", gateway["staff"]).json()
    assert detail["state"] != "active"
    ready = call(
        "POST", "/v1/provisioning/activate", key, json={"status": "ready", "tests_passed": True}
    )
    assert ready.json() == {"activated": True}
    assert call("GET", "/v1/controllers/CTRL001", key).json()["state"] == "active"

    again = call("POST", "/v1/sites/SITE001/enrollment-tokens", gateway["staff"], json={})
    issued_secrets.append(again.json()["secret"])
    conflict = call(
        "POST",
        "/v1/provisioning/register",
        again.json()["secret"],
        json={"serial": "CP-DEMO-0001", "site_id": "SITE001"},
    )
    assert conflict.status_code == 409


def test_rotation_revocation_and_suspension_take_effect_at_once(live, issued_secrets):
    call = Caller(live.url)
    gateway = provision(live, call, issued_secrets, f"CP-{uuid.uuid4().hex[:8]}")
    staff, old, code = gateway["staff"], gateway["api_key"], gateway["controller_id"]
    path = f"/v1/controllers/{code}"
    rotated = call("POST", f"{path}/api-keys/rotate", staff, json={"grace_s": 0})
    new = rotated.json()["api_key"]
    issued_secrets.append(new)
    assert call("GET", path, old).status_code == 401
    assert call("GET", path, new).status_code == 200
    assert call("POST", f"{path}/state", staff, json={"state": "suspended"}).ok
    assert call("GET", path, new).status_code == 401
    assert call("POST", f"{path}/state", staff, json={"state": "active"}).ok
    assert call("GET", path, new).status_code == 200
    assert call("POST", f"{path}/api-keys/revoke", staff).json()["revoked"] == 1
    assert call("GET", path, new).status_code == 401


def test_an_allowlist_refuses_other_addresses_and_a_spoofed_forwarded_header(live, issued_secrets):
    call = Caller(live.url)
    gateway = provision(live, call, issued_secrets, f"CP-{uuid.uuid4().hex[:8]}")
    staff, key, code = gateway["staff"], gateway["api_key"], gateway["controller_id"]
    path = f"/v1/controllers/{code}"
    call("PUT", f"{path}/access", staff, json={"ip_allowlist": ["10.0.0.0/8"]})
    refused = call("GET", path, key)
    assert refused.status_code == 403
    spoofed = call("GET", path, key, headers={"X-Forwarded-For": "10.1.2.3"})
    assert spoofed.status_code == 403
    call("PUT", f"{path}/access", staff, json={"ip_allowlist": ["127.0.0.1/32"]})
    assert call("GET", path, key).status_code == 200


def test_a_rotated_refresh_token_cannot_be_used_again(live, issued_secrets):
    call = Caller(live.url)
    tokens = call(
        "POST", "/v1/auth/token", json={"username": "admin", "password": live.admin_password}
    ).json()
    issued_secrets.extend([tokens["access"], tokens["refresh"]])
    rotated = call("POST", "/v1/auth/token/refresh", json={"refresh": tokens["refresh"]})
    assert rotated.status_code == 200
    issued_secrets.extend(rotated.json().values())
    reused = call("POST", "/v1/auth/token/refresh", json={"refresh": tokens["refresh"]})
    assert reused.status_code == 401
    assert reused.headers["Content-Type"] == "application/problem+json"
    fresh = call("POST", "/v1/auth/token/refresh", json={"refresh": rotated.json()["refresh"]})
    assert fresh.status_code == 200


def test_every_call_leaves_an_audit_row_and_no_issued_secret_is_anywhere(live, issued_secrets):
    call = Caller(live.url)
    gateway = provision(live, call, issued_secrets, f"CP-{uuid.uuid4().hex[:8]}")
    before = audit_rows(live)
    key = gateway["api_key"]
    call("GET", "/v1/provisioning/initial-config", key)
    call("GET", f"/v1/health?api_key={key}")  # a secret pasted into a URL is masked
    call("POST", "/v1/provisioning/activate", key, json={"status": "ready", "tests_passed": True})
    call("GET", "/v1/sites/SITE001", "enx_bogus.bogus")
    call("POST", "/v1/auth/token", json={"username": "admin", "password": "wrong-password"})
    after = audit_rows(live)
    new_rows = after[len(before) :]
    assert [(r["method"], r["path"], r["status_code"]) for r in new_rows] == [
        ("GET", "/v1/provisioning/initial-config", 200),
        ("GET", "/v1/health", 200),
        ("POST", "/v1/provisioning/activate", 200),
        ("GET", "/v1/sites/SITE001", 401),
        ("POST", "/v1/auth/token", 401),
    ]
    assert new_rows[0]["principal"] == f"controller:{gateway['controller_id']}"
    assert new_rows[0]["source_ip"] == "127.0.0.1"
    assert any(change["model"] == "registry.controller" for change in new_rows[2]["changes"])

    haystacks = {
        "audit rows": json.dumps(after),
        "server log": live.proc.log(),
        "error bodies": "\n".join(call.error_bodies),
    }
    for secret in issued_secrets:
        for where, text in haystacks.items():
            for part in {secret, secret.split(".", 1)[-1]}:
                assert part not in text, f"an issued secret appears in the {where}"


def audit_rows(live) -> list[dict]:
    script = (
        "import json; from enexa.audit.models import AuditEntry; "
        "print(json.dumps(list(AuditEntry.objects.order_by('pk').values()), default=str))"
    )
    rows = json.loads(run_manage("shell", "-c", script, env=live.env).strip().splitlines()[-1])
    return [row for row in rows if row["path"] != "/v1/health" or row["query"]]


def test_past_the_limit_two_server_processes_sharing_redis_answer_429(tmp_path, redis_url):
    env = {
        "REDIS_URL": redis_url,
        "ENEXA_RATE_LIMITS": "controller=12/min",
        "ENEXA_RATE_LIMIT_PREFIX": f"test:{uuid.uuid4().hex}",
    }
    with enexa_database(tmp_path) as database_url:
        first = LiveEnexa(database_url, tmp_path, extra_env=env)
        second_port = free_port()
        second = Proc(
            f"enexa-second-{second_port}",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "enexa.wsgi",
                "-b",
                f"127.0.0.1:{second_port}",
                "-w",
                "2",
                "--threads",
                "4",
            ],
            tmp_path,
            first.env,
        )
        try:
            second_url = f"http://127.0.0.1:{second_port}"
            wait_until(
                lambda: requests.get(f"{second_url}/v1/health", timeout=1).ok,
                30,
                what="second Enexa",
            )
            gateway = provision(first, Caller(first.url), [], "CP-RATE-1")
            key = gateway["api_key"]
            urls = [f"{url}/v1/provisioning/initial-config" for url in (first.url, second_url)] * 15

            def get(url):
                return requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

            with ThreadPoolExecutor(max_workers=8) as pool:
                responses = list(pool.map(get, urls))
            statuses = [r.status_code for r in responses]
            assert statuses.count(200) == 12, statuses
            assert statuses.count(429) == 18, statuses
            limited = next(r for r in responses if r.status_code == 429)
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert limited.headers["Content-Type"] == "application/problem+json"
            served_by = {r.url.split("/v1/")[0] for r in responses if r.status_code == 429}
            assert served_by == {first.url, second_url}
        finally:
            second.stop()
            first.stop()


def test_while_the_database_is_down_the_api_answers_503_with_retry_after(tmp_path):
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        base = "postgres://postgres@127.0.0.1:5432/postgres"
    import psycopg

    problem = ""
    try:
        psycopg.connect(base, connect_timeout=2).close()
    except psycopg.OperationalError as exc:
        problem = " ".join(str(exc).split())
    if problem:  # failed outside the `except`: one line, no chained traceback
        pytest.fail(
            f"this test needs a PostgreSQL server to put behind a proxy, at {base} (or set "
            f"DATABASE_URL to one): {problem}",
            pytrace=False,
        )
    name = f"enexa_down_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(base)
    proxy = TcpProxy(int(info.get("port", 5432)))  # PostgreSQL on 127.0.0.1
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    proxied = f"postgres://{user}{password}@127.0.0.1:{proxy.port}/{name}"
    enexa = None
    try:
        enexa = LiveEnexa(proxied, tmp_path, extra_env={"REDIS_URL": ""})
        staff = enexa.staff_token()
        auth = {"Authorization": f"Bearer {staff}"}
        assert requests.get(f"{enexa.url}/v1/sites", headers=auth, timeout=10).ok

        proxy.cut()
        health = requests.get(f"{enexa.url}/v1/health", timeout=10)
        assert health.status_code == 503
        assert health.json()["database"] == "down"
        assert health.headers["Retry-After"]
        for _ in range(3):  # each worker finds its pooled connection dead
            sites = requests.get(f"{enexa.url}/v1/sites", headers=auth, timeout=10)
            assert sites.status_code == 503
            assert sites.headers["Retry-After"]
            assert sites.headers["Content-Type"] == "application/problem+json"
            assert "Traceback" not in sites.text

        proxy.restore()
        wait_until(
            lambda: requests.get(f"{enexa.url}/v1/sites", headers=auth, timeout=10).ok,
            30,
            what="recovery",
        )
    finally:
        if enexa is not None:
            enexa.stop()
        proxy.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
