"""The audit log: a row per API call, with the objects a write changed, and no secrets."""

import pytest
from rest_framework.test import APIClient

from enexa.audit.models import AuditEntry
from enexa.provisioning import services
from tests.factories import ControllerFactory

pytestmark = pytest.mark.django_db


def test_every_api_call_leaves_one_row_with_principal_ip_method_path_and_status(
    staff_client, staff, site
):
    staff_client.get("/v1/health")
    staff_client.get("/v1/no-such-thing")
    rows = list(AuditEntry.objects.order_by("pk"))
    assert [(r.method, r.path, r.status_code) for r in rows] == [
        ("GET", "/v1/health", 200),
        ("GET", "/v1/no-such-thing", 404),
    ]
    assert rows[0].source_ip == "127.0.0.1"


def test_a_write_records_the_principal_and_the_object_it_changed(staff_client, staff, site):
    controller = ControllerFactory(site=site)
    staff_client.post(
        f"/v1/controllers/{controller.code}/state", {"state": "suspended"}, format="json"
    )
    row = AuditEntry.objects.get(path__endswith="/state")
    assert row.principal == f"user:{staff.username}"
    assert {"model": "registry.controller", "id": controller.code, "action": "updated"} in (
        row.changes
    )


def test_a_controller_call_is_recorded_under_the_controller(site):
    controller = ControllerFactory(site=site)
    _, key = services.issue_api_key(controller)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.post(
        "/v1/provisioning/activate", {"status": "ready", "tests_passed": False}, format="json"
    )
    assert AuditEntry.objects.get().principal == f"controller:{controller.code}"


def test_issued_secrets_never_reach_the_audit_log(staff_client, site):
    controller = ControllerFactory(site=site)
    enrollment = staff_client.post(
        f"/v1/sites/{site.code}/enrollment-tokens", {}, format="json"
    ).json()["secret"]
    rotated = staff_client.post(
        f"/v1/controllers/{controller.code}/api-keys/rotate", {}, format="json"
    ).json()["api_key"]
    client = APIClient()
    client.get(f"/v1/health?api_key={rotated}&token={enrollment}")
    dump = repr(list(AuditEntry.objects.values()))
    for secret in (enrollment, rotated):
        assert secret not in dump
        assert secret.split(".", 1)[1] not in dump
    assert "redacted" in dump


def test_a_write_without_model_saves_records_the_object_its_url_names(staff_client, site):
    controller = ControllerFactory(site=site)
    services.issue_api_key(controller)
    staff_client.post(f"/v1/controllers/{controller.code}/api-keys/revoke")
    row = AuditEntry.objects.get(path__endswith="/revoke")
    assert row.changes == [
        {"model": "registry.controller", "id": controller.code, "action": "target"}
    ]


def test_entries_past_the_retention_period_are_pruned():
    from datetime import timedelta
    from io import StringIO

    from django.core.management import call_command
    from django.utils import timezone

    old = AuditEntry.objects.create(
        principal="anonymous",
        method="GET",
        path="/v1/health",
        status_code=200,
        created_at=timezone.now() - timedelta(days=400),
    )
    recent = AuditEntry.objects.create(
        principal="anonymous", method="GET", path="/v1/health", status_code=200
    )
    call_command("prune_audit_log", "--days", "365", stdout=StringIO())
    assert list(AuditEntry.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not AuditEntry.objects.filter(pk=old.pk).exists()
