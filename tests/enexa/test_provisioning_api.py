"""Provisioning endpoints through the API: register, initial config, activate, staff actions."""

import pytest
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from enexa.provisioning import services
from enexa.provisioning.models import ApiKey
from enexa.registry.choices import ControllerState
from enexa.registry.models import Controller
from tests.factories import ControllerFactory

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_staff_create_an_enrollment_secret_shown_once(staff_client, site):
    response = staff_client.post(
        f"/v1/sites/{site.code}/enrollment-tokens", {"uses": 2, "ttl_s": 3600}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("enr_") and body["uses_left"] == 2
    assert body["site_id"] == site.code


def test_an_operator_cannot_create_an_enrollment_secret(operator_client, site):
    response = operator_client.post(f"/v1/sites/{site.code}/enrollment-tokens", {}, format="json")
    assert response.status_code == 403


def test_registration_without_the_enrollment_secret_is_401(anon_client, site):
    response = anon_client.post(
        "/v1/provisioning/register", {"serial": "AGW-1", "site_id": site.code}, format="json"
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"]
    assert not Controller.objects.exists()


def test_a_gateway_registers_fetches_its_config_and_activates(site):
    _, secret = services.create_enrollment_token(site)
    registered = bearer(secret).post(
        "/v1/provisioning/register", {"serial": "AGW-1", "site_id": site.code}, format="json"
    )
    assert registered.status_code == 201, registered.content
    body = registered.json()
    assert body["config_url"].endswith("/v1/provisioning/initial-config")
    gateway = bearer(body["api_key"])
    initial = gateway.get("/v1/provisioning/initial-config")
    assert initial.status_code == 200, initial.content
    assert {"config", "assets"} <= initial.json().keys()
    refused = gateway.post(
        "/v1/provisioning/activate",
        {"status": "ready", "tests_passed": False, "detail": "no modbus"},
        format="json",
    )
    assert refused.json()["activated"] is False
    assert Controller.objects.get().state == ControllerState.REGISTERED
    activated = gateway.post(
        "/v1/provisioning/activate", {"status": "ready", "tests_passed": True}, format="json"
    )
    assert activated.json() == {"activated": True}
    assert Controller.objects.get().state == ControllerState.ACTIVE


def test_registering_an_active_serial_again_is_409(site):
    ControllerFactory(serial="AGW-1", site=site, state=ControllerState.ACTIVE)
    _, secret = services.create_enrollment_token(site)
    response = bearer(secret).post(
        "/v1/provisioning/register", {"serial": "AGW-1", "site_id": site.code}, format="json"
    )
    assert response.status_code == 409


def test_staff_rotate_a_key_and_both_work_during_the_grace_period(staff_client, site):
    controller = ControllerFactory(site=site)
    _, old = services.issue_api_key(controller)
    response = staff_client.post(
        f"/v1/controllers/{controller.code}/api-keys/rotate", {"grace_s": 600}, format="json"
    )
    assert response.status_code == 200
    new = response.json()["api_key"]
    for key in (old, new):
        assert bearer(key).get("/v1/provisioning/initial-config").status_code == 200
    # The deadline the response announces is the one the old key is held to.
    announced = parse_datetime(response.json()["previous_keys_expire_at"])
    assert announced == ApiKey.objects.get(expires_at__isnull=False).expires_at


def test_staff_revoke_keys_and_the_key_is_refused_at_once(staff_client, site):
    controller = ControllerFactory(site=site)
    _, key = services.issue_api_key(controller)
    response = staff_client.post(f"/v1/controllers/{controller.code}/api-keys/revoke")
    assert response.json()["revoked"] == 1
    assert bearer(key).get("/v1/provisioning/initial-config").status_code == 401


def test_staff_suspend_a_controller_and_its_key_stops_working(staff_client, site):
    controller = ControllerFactory(site=site)
    _, key = services.issue_api_key(controller)
    response = staff_client.post(
        f"/v1/controllers/{controller.code}/state", {"state": "suspended"}, format="json"
    )
    assert response.json() == {"id": controller.code, "state": "suspended"}
    assert bearer(key).get("/v1/provisioning/initial-config").status_code == 401


def test_an_impossible_state_move_is_409(staff_client, site):
    controller = ControllerFactory(site=site, state=ControllerState.PENDING)
    response = staff_client.post(
        f"/v1/controllers/{controller.code}/state", {"state": "active"}, format="json"
    )
    assert response.status_code == 409


def test_a_controller_key_cannot_rotate_keys(site):
    controller = ControllerFactory(site=site)
    _, key = services.issue_api_key(controller)
    response = bearer(key).post(f"/v1/controllers/{controller.code}/api-keys/rotate")
    assert response.status_code == 403
    assert ApiKey.objects.count() == 1


def test_registration_ignores_fields_the_gateway_may_not_set(site, other_site):
    _, secret = services.create_enrollment_token(site)
    response = bearer(secret).post(
        "/v1/provisioning/register",
        {
            "serial": "AGW-9",
            "site_id": site.code,
            "controller_id": "CTRL999",
            "state": "active",
            "site": other_site.code,
            "api_key": "enx_chosen.secret",
            "code": "CTRL999",
        },
        format="json",
    )
    assert response.status_code == 201
    controller = Controller.objects.get(serial="AGW-9")
    assert (controller.site, controller.state) == (site, ControllerState.REGISTERED)
    assert controller.code != "CTRL999"
    assert response.json()["api_key"] != "enx_chosen.secret"
    assert services.authenticate_api_key("enx_chosen.secret") is None


def test_activation_and_rotation_ignore_a_state_or_key_the_caller_sends(staff_client, site):
    controller = ControllerFactory(site=site, state=ControllerState.REGISTERED)
    _, key = services.issue_api_key(controller)
    bearer(key).post(
        "/v1/provisioning/activate",
        {"status": "ready", "tests_passed": False, "state": "active", "site_id": "SITE002"},
        format="json",
    )
    controller.refresh_from_db()
    assert controller.state == ControllerState.REGISTERED
    rotated = staff_client.post(
        f"/v1/controllers/{controller.code}/api-keys/rotate",
        {"api_key": "enx_chosen.secret", "secret_hash": "0" * 64},
        format="json",
    )
    assert rotated.json()["api_key"] != "enx_chosen.secret"
    assert not ApiKey.objects.filter(secret_hash="0" * 64).exists()


def test_staff_cannot_set_a_controllers_state_by_patching_it(staff_client, site):
    controller = ControllerFactory(site=site, state=ControllerState.SUSPENDED)
    staff_client.patch(f"/v1/controllers/{controller.code}", {"state": "active"}, format="json")
    controller.refresh_from_db()
    assert controller.state == ControllerState.SUSPENDED
