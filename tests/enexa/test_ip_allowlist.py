"""IP allowlists per controller, and X-Forwarded-For believed only from trusted proxies."""

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from enexa.audit.models import AuditEntry
from enexa.provisioning import services
from enexa.provisioning.models import ControllerAccess
from tests.factories import ControllerFactory

pytestmark = pytest.mark.django_db
PATH = "/v1/provisioning/initial-config"


@pytest.fixture
def key_client(site) -> APIClient:
    controller = ControllerFactory(site=site)
    ControllerAccess.objects.create(controller=controller, ip_allowlist=["10.1.0.0/16"])
    _, key = services.issue_api_key(controller)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def status_from(client, remote, forwarded=None) -> int:
    extra = {"REMOTE_ADDR": remote}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post("/v1/provisioning/activate", {}, format="json", **extra).status_code


def test_a_listed_address_passes_and_another_is_refused_with_403(key_client):
    assert status_from(key_client, "10.1.2.3") == 400  # past authentication: body invalid
    assert status_from(key_client, "10.2.0.1") == 403


def test_a_spoofed_forwarded_header_from_an_untrusted_address_changes_nothing(key_client):
    assert status_from(key_client, "10.2.0.1", forwarded="10.1.2.3") == 403


@override_settings(TRUSTED_PROXIES=["192.0.2.10"])
def test_behind_a_trusted_proxy_the_forwarded_client_address_counts(key_client):
    assert status_from(key_client, "192.0.2.10", forwarded="10.1.2.3") == 400
    assert status_from(key_client, "192.0.2.10", forwarded="10.2.0.1") == 403


@override_settings(TRUSTED_PROXIES=["192.0.2.0/24"])
def test_a_client_cannot_prepend_a_listed_address_through_the_proxy(key_client):
    # The proxy appends the address it saw; what the client sent stands left of it.
    assert status_from(key_client, "192.0.2.10", forwarded="10.1.2.3, 10.2.0.1") == 403
    assert status_from(key_client, "192.0.2.10", forwarded="10.2.0.1, 10.1.2.3, 192.0.2.5") == 400


def test_a_controller_without_an_allowlist_is_reachable_from_anywhere(site):
    _, key = services.issue_api_key(ControllerFactory(site=site))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert status_from(client, "203.0.113.9") == 400


@override_settings(TRUSTED_PROXIES=["192.0.2.10"])
def test_the_audit_log_records_the_client_address_not_the_proxy(key_client):
    status_from(key_client, "192.0.2.10", forwarded="10.2.0.1")
    entry = AuditEntry.objects.get()
    assert (entry.source_ip, entry.status_code) == ("10.2.0.1", 403)


def test_an_allowlist_entry_must_be_a_network():
    from django.core.exceptions import ValidationError

    access = ControllerAccess(controller=ControllerFactory(), ip_allowlist=["not-a-net"])
    with pytest.raises(ValidationError):
        access.full_clean()


def test_staff_set_an_allowlist_through_the_api_and_bad_networks_are_400(staff_client, site):
    controller = ControllerFactory(site=site)
    path = f"/v1/controllers/{controller.code}/access"
    assert staff_client.get(path).json() == {"ip_allowlist": []}
    response = staff_client.put(path, {"ip_allowlist": ["10.1.2.0/24", "192.0.2.7"]}, format="json")
    assert response.json() == {"ip_allowlist": ["10.1.2.0/24", "192.0.2.7/32"]}
    bad = staff_client.put(path, {"ip_allowlist": ["10.1.2.0/33"]}, format="json")
    assert bad.status_code == 400
    assert "ip_allowlist" in bad.json()["errors"]
