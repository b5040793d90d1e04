"""API keys and enrollment secrets: issued once, stored hashed, revoked, rotated, scoped."""

from datetime import timedelta

import pytest
from django.utils import timezone

from enexa.core.errors import ForbiddenError
from enexa.provisioning import services
from enexa.provisioning.models import ApiKey, ControllerAccess, EnrollmentToken
from enexa.registry.choices import ControllerState
from tests.factories import ControllerFactory, SiteFactory

pytestmark = pytest.mark.django_db


def test_an_issued_key_authenticates_as_its_controller_and_site():
    controller = ControllerFactory()
    key, plaintext = services.issue_api_key(controller)
    principal = services.authenticate_api_key(plaintext)
    assert principal.controller_code == controller.code
    assert principal.site_code == controller.site.code
    assert plaintext.startswith(f"enx_{key.lookup}.")


def test_only_a_hash_of_the_secret_is_stored():
    _, plaintext = services.issue_api_key(ControllerFactory())
    secret = plaintext.split(".", 1)[1]
    stored = ApiKey.objects.values_list("lookup", "secret_hash").get()
    assert secret not in "".join(stored)


def test_a_wrong_secret_with_a_real_lookup_is_refused():
    _, plaintext = services.issue_api_key(ControllerFactory())
    assert services.authenticate_api_key(plaintext[:-2] + "xx") is None
    assert services.authenticate_api_key("enx_nodot") is None
    assert services.authenticate_api_key("enx_.secret") is None


def test_a_revoked_key_stops_working():
    controller = ControllerFactory()
    _, plaintext = services.issue_api_key(controller)
    assert services.revoke_api_keys(controller) == 1
    assert services.authenticate_api_key(plaintext) is None


@pytest.mark.parametrize("state", [ControllerState.SUSPENDED, ControllerState.DECOMMISSIONED])
def test_the_key_of_a_suspended_or_decommissioned_controller_stops_at_once(state):
    controller = ControllerFactory()
    _, plaintext = services.issue_api_key(controller)
    services.set_controller_state(controller, state)
    assert services.authenticate_api_key(plaintext) is None


def test_a_resumed_controller_may_use_its_key_again():
    controller = ControllerFactory()
    _, plaintext = services.issue_api_key(controller)
    services.set_controller_state(controller, ControllerState.SUSPENDED)
    services.set_controller_state(controller, ControllerState.ACTIVE)
    assert services.authenticate_api_key(plaintext) is not None


def test_rotation_keeps_the_old_key_for_the_grace_period_and_then_drops_it():
    controller = ControllerFactory()
    _, old = services.issue_api_key(controller)
    new, _ = services.rotate_api_key(controller, grace_s=3600)
    assert services.authenticate_api_key(old) is not None
    assert services.authenticate_api_key(new) is not None
    ApiKey.objects.filter(expires_at__isnull=False).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.authenticate_api_key(old) is None
    assert services.authenticate_api_key(new) is not None


def test_rotation_without_grace_drops_the_old_key_at_once():
    controller = ControllerFactory()
    _, old = services.issue_api_key(controller)
    services.rotate_api_key(controller, grace_s=0)
    assert services.authenticate_api_key(old) is None


def test_last_used_at_is_written_at_most_once_a_minute():
    key, plaintext = services.issue_api_key(ControllerFactory())
    services.authenticate_api_key(plaintext)
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    services.authenticate_api_key(plaintext)
    key.refresh_from_db()
    assert key.last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    services.authenticate_api_key(plaintext)
    key.refresh_from_db()
    assert key.last_used_at > first - timedelta(minutes=2)


def test_an_allowlist_refuses_other_addresses_but_not_listed_ones():
    controller = ControllerFactory()
    ControllerAccess.objects.create(controller=controller, ip_allowlist=["10.1.0.0/16"])
    _, plaintext = services.issue_api_key(controller)
    assert services.authenticate_api_key(plaintext, client_ip="10.1.2.3") is not None
    with pytest.raises(ForbiddenError):
        services.authenticate_api_key(plaintext, client_ip="10.2.0.1")


def test_an_enrollment_secret_registers_a_new_controller_with_the_next_code():
    site = SiteFactory(code="SITE001")
    ControllerFactory(code="CTRL007", site=SiteFactory())
    _, secret = services.create_enrollment_token(site, uses=2, ttl_s=600)
    controller, key = services.register_controller(secret, "AGW-NEW-1", "SITE001")
    assert controller.code == "CTRL008"
    assert controller.state == ControllerState.REGISTERED
    assert services.authenticate_api_key(key).controller_code == "CTRL008"
    assert EnrollmentToken.objects.get().uses_left == 1


def test_registration_binds_to_the_pre_registered_controller_of_that_serial():
    site = SiteFactory(code="SITE001")
    ControllerFactory(code="CTRL001", serial="AGW-1", site=site, state=ControllerState.PENDING)
    _, secret = services.create_enrollment_token(site)
    controller, _ = services.register_controller(secret, "AGW-1", "SITE001")
    assert controller.code == "CTRL001"


def test_an_active_serial_conflicts_until_staff_reset_it():
    from enexa.core.errors import ConflictError

    site = SiteFactory(code="SITE001")
    controller = ControllerFactory(serial="AGW-1", site=site, state=ControllerState.ACTIVE)
    _, old_key = services.issue_api_key(controller)
    _, secret = services.create_enrollment_token(site, uses=5)
    with pytest.raises(ConflictError):
        services.register_controller(secret, "AGW-1", "SITE001")
    services.set_controller_state(controller, ControllerState.PENDING)
    assert services.authenticate_api_key(old_key) is None
    again, _ = services.register_controller(secret, "AGW-1", "SITE001")
    assert again.pk == controller.pk


@pytest.mark.parametrize("case", ["expired", "used_up", "other_site", "garbage"])
def test_an_enrollment_secret_that_is_not_valid_registers_nothing(case):
    from enexa.core.errors import InvalidCredentials

    site = SiteFactory(code="SITE001")
    SiteFactory(code="SITE002")
    token, secret = services.create_enrollment_token(site)
    site_code = "SITE001"
    if case == "expired":
        EnrollmentToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "used_up":
        EnrollmentToken.objects.update(uses_left=0)
    elif case == "other_site":
        site_code = "SITE002"
    else:
        secret = f"enr_{token.lookup}.not-the-secret"
    with pytest.raises(InvalidCredentials):
        services.register_controller(secret, "AGW-9", site_code)
    assert not ApiKey.objects.exists()


def test_activation_with_failed_tests_keeps_the_controller_inactive_with_the_reason():
    controller = ControllerFactory(state=ControllerState.REGISTERED)
    assert services.activate_controller(controller.pk, "ready", False, "modbus timeout") is False
    controller.refresh_from_db()
    assert controller.state == ControllerState.REGISTERED
    assert "modbus timeout" in controller.access.activation_detail
    assert services.activate_controller(controller.pk, "ready", True) is True
    controller.refresh_from_db()
    assert controller.state == ControllerState.ACTIVE


def test_a_controller_staff_registered_without_keys_can_be_claimed_once():
    from enexa.core.errors import ConflictError

    site = SiteFactory(code="SITE001")
    ControllerFactory(code="CTRL001", serial="CP-1", site=site, state=ControllerState.REGISTERED)
    _, secret = services.create_enrollment_token(site, uses=2)
    controller, _ = services.register_controller(secret, "CP-1", "SITE001")
    assert controller.code == "CTRL001"
    with pytest.raises(ConflictError):
        services.register_controller(secret, "CP-1", "SITE001")


def test_the_management_command_prints_only_a_working_enrollment_secret():
    from io import StringIO

    from django.core.management import call_command

    site = SiteFactory(code="SITE001")
    out = StringIO()
    call_command("create_enrollment_token", "SITE001", "--uses", "1", stdout=out, stderr=StringIO())
    secret = out.getvalue().strip()
    controller, _ = services.register_controller(secret, "CP-2", site.code)
    assert controller.site == site
