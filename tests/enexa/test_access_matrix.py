"""Every URL the project serves, called as every kind of wrong caller.

The list is built from the URL configuration, so a new endpoint is checked without being
named here: without a token, with an expired JWT or a revoked key it must answer 401; with the
key or the operator login of another site it must answer 403 or 404 and show nothing of it."""

import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.urls import URLResolver, clear_url_caches, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from enexa.alerts.services import open_alert
from enexa.dispatch.models import Command
from enexa.optimizer.models import Plan
from enexa.provisioning import services
from enexa.webhooks.services import create_webhook, publish
from tests.conftest import jwt_client
from tests.factories import (
    ChargerFactory,
    ControllerFactory,
    MembershipFactory,
    SiteFactory,
    StaffFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# Endpoints anyone may call (login, health, the schema and its docs).
PUBLIC = {
    "v1/health",
    "v1/health/",
    "v1/schema/",
    "v1/docs/",
    "v1/redoc/",
    "v1/auth/token",
    "v1/auth/token/refresh",
}
# Endpoints that authenticate a secret of their own, not a key or a JWT.
OWN_SECRET = {"v1/provisioning/register"}
METHODS = ("get", "post", "put", "patch", "delete")
PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def served_endpoints() -> list[tuple[str, list[str]]]:
    """(route, methods) for every /v1/ URL pattern, found by walking the resolvers."""

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.callback

    endpoints = []
    for route, callback in walk(get_resolver().url_patterns, ""):
        if not route.startswith("v1/"):
            continue
        actions = getattr(callback, "actions", None)
        view_class = getattr(callback, "cls", None)
        if actions:
            methods = sorted(actions)
        elif view_class is not None:
            methods = [m for m in METHODS if hasattr(view_class, m)]
        else:
            methods = ["get"]
        endpoints.append((route, methods))
    return endpoints


ENDPOINTS = [(route, m) for route, methods in served_endpoints() for m in methods]


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """Site A with its controller, operator and key; site B with everything a URL can name.

    Built once for the module's ~190 tests, inside a transaction that each test's own nests in
    (as a savepoint rolled back after it) and that is rolled back after the last one: every
    test still starts from exactly this data, as with Django's setUpTestData."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)


def build_world() -> dict:
    site_a = SiteFactory(code="SITEA1")
    site_b = SiteFactory(code="SITEB1")
    controller_a = ControllerFactory(code="CTRLA1", site=site_a)
    controller_b = ControllerFactory(code="CTRLB1", site=site_b)
    charger_b = ChargerFactory(code="CHGB1", site=site_b)
    command_b = Command.objects.create(
        command_id="cmd-site-b",
        site=site_b,
        command="set_mode",
        params={"mode": "auto"},
        issued_at=timezone.now(),
        created_by="staff",
    )
    # Site B's plan in force: no caller of site A may see it (GET .../plan, .../plans).
    plan_b = Plan.objects.create(
        code="plan_site_b",
        site=site_b,
        version=1,
        created_at=timezone.now(),
        created_by="staff",
        reason="manual",
        status="optimal",
        slot_minutes=60,
        start_at=timezone.now() - timedelta(minutes=30),
        end_at=timezone.now() + timedelta(hours=23),
        cost_total=0.0,
        cost_baseline=0.0,
        solve_ms=1.0,
        dispatched=True,
        inputs_digest="0" * 64,
    )
    _, key_a = services.issue_api_key(controller_a)
    controller_revoked = ControllerFactory(site=site_a)
    _, revoked = services.issue_api_key(controller_revoked)
    services.revoke_api_keys(controller_revoked)
    operator_a = UserFactory(username="operator-a")
    MembershipFactory(user=operator_a, site=site_a)
    operator_b = UserFactory(username="operator-b")
    MembershipFactory(user=operator_b, site=site_b)
    alert_b, _ = open_alert("site_offline", "critical", {"site": site_b.code}, site_pk=site_b.pk)
    with override_settings(ENEXA_WEBHOOK_ALLOW_PRIVATE=True):
        webhook_b, _ = create_webhook(
            owner=operator_b, url="http://127.0.0.1:9/b", events=["site.offline"], site_codes=None
        )
    [delivery_b] = publish("site.offline", site_b, {"site_id": site_b.code})
    expired = AccessToken.for_user(StaffFactory(username="expired-staff"))
    expired.set_exp(lifetime=-timedelta(minutes=1))
    return {
        "key_a": key_a,
        "revoked_key": revoked,
        "operator_a": operator_a,
        "expired_jwt": str(expired),
        # What each URL parameter names: always something of site B.
        "values": {
            "site_id": site_b.code,
            "controller_id": controller_b.code,
            "asset_id": charger_b.code,
            "command_id": command_b.command_id,
            "alert_id": alert_b.code,
            "webhook_id": webhook_b.code,
            "delivery_id": delivery_b,
            "n": "1",
            "number": "1",
            "version": "1",
        },
        "site_b_codes": {
            site_b.code,
            controller_b.code,
            charger_b.code,
            controller_b.serial,
            command_b.command_id,
            alert_b.code,
            webhook_b.code,
            delivery_b,
            plan_b.code,
        },
    }


def concrete(route: str, values: dict[str, str]) -> str:
    def fill(match):
        name = match.group("name")
        if name not in values:
            pytest.fail(f"{route}: add a site-B sample value for the URL parameter '{name}'")
        return values[name]

    return "/" + PARAMETER.sub(fill, route)


def call(client: APIClient, method: str, path: str):
    if method in ("get", "delete"):
        return getattr(client, method)(path)
    return getattr(client, method)(path, {}, format="json")


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_the_matrix_covers_the_provisioning_and_registry_endpoints():
    routes = {route for route, _ in ENDPOINTS}
    assert "v1/provisioning/initial-config" in routes
    assert "v1/controllers/<str:controller_id>/api-keys/rotate" in routes


def test_the_matrix_covers_the_planning_endpoints():
    assert {
        ("v1/sites/<str:site_id>/prices", "put"),
        ("v1/sites/<str:site_id>/plans", "post"),
        ("v1/sites/<str:site_id>/plan", "get"),
        ("v1/sites/<str:site_id>/plan", "delete"),
        ("v1/sites/<str:site_id>/plan/actual", "get"),
    } <= set(ENDPOINTS)


@pytest.mark.parametrize(("route", "method"), ENDPOINTS, ids=[f"{m} {r}" for r, m in ENDPOINTS])
def test_without_a_token_every_protected_endpoint_answers_401(world, route, method):
    if route in PUBLIC:
        pytest.skip("public")
    response = call(APIClient(), method, concrete(route, world["values"]))
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("route", "method"), ENDPOINTS, ids=[f"{m} {r}" for r, m in ENDPOINTS])
def test_an_expired_jwt_and_a_revoked_key_are_refused_everywhere_with_401(world, route, method):
    if route in PUBLIC:
        pytest.skip("public")
    path = concrete(route, world["values"])
    for token in (world["expired_jwt"], world["revoked_key"]):
        response = call(bearer(token), method, path)
        assert response.status_code == 401, (token[:4], response.content)


def assert_no_cross_site_access(world, route: str, method: str) -> None:
    """Site A's key and operator, calling `route` about site B: 403 or 404 and none of B's data
    (a collection route must not list B's objects)."""
    path = concrete(route, world["values"])
    names_a_resource = PARAMETER.search(route) is not None
    for client in (bearer(world["key_a"]), jwt_client(world["operator_a"])):
        response = call(client, method, path)
        if route in OWN_SECRET:
            assert response.status_code == 401
            continue
        if names_a_resource:
            assert response.status_code in (403, 404), (
                path,
                response.status_code,
                response.content,
            )
        else:
            assert response.status_code != 500, response.content
        mentioned = {code for code in world["site_b_codes"] if code.encode() in response.content}
        named_in_path = {code for code in world["site_b_codes"] if code in path}
        assert mentioned <= named_in_path, (path, mentioned)


@pytest.mark.parametrize(("route", "method"), ENDPOINTS, ids=[f"{m} {r}" for r, m in ENDPOINTS])
def test_another_sites_key_or_operator_never_gets_its_data(world, route, method):
    if route in PUBLIC:
        pytest.skip("public")
    assert_no_cross_site_access(world, route, method)


@override_settings(ROOT_URLCONF="tests.enexa.leaky_urls")
def test_the_matrix_fails_an_endpoint_added_without_site_scoping(world):
    clear_url_caches()
    try:
        known = {route for route, _ in ENDPOINTS}
        added = [(route, methods) for route, methods in served_endpoints() if route not in known]
        assert added == [("v1/leaky/sites/<str:site_id>", ["get"])]
        with pytest.raises(AssertionError):
            assert_no_cross_site_access(world, "v1/leaky/sites/<str:site_id>", "get")
    finally:
        clear_url_caches()
