"""`manage.py seed_demo`: the demo site, its ChargePost and users, idempotently."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from enexa.registry.choices import ControllerState, EquipmentKind
from enexa.registry.models import Controller, Equipment, Site, SiteMembership

pytestmark = pytest.mark.django_db


def seed(monkeypatch, **passwords) -> str:
    for name in ("ENEXA_DEMO_ADMIN_PASSWORD", "ENEXA_DEMO_OPERATOR_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in passwords.items():
        monkeypatch.setenv(name, value)
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    users = get_user_model().objects.order_by("username")
    return {
        "sites": list(Site.objects.values()),
        "equipment": list(Equipment.objects.values()),
        "controllers": list(Controller.objects.values()),
        "assets": list(Controller.assets.through.objects.values()),
        "memberships": list(SiteMembership.objects.values()),
        "users": list(users.values("username", "password", "is_staff", "is_superuser")),
    }


def test_seed_demo_creates_the_demo_site_with_its_chargepost(monkeypatch):
    seed(monkeypatch, ENEXA_DEMO_ADMIN_PASSWORD="a-long-admin-secret")
    site = Site.objects.get(code="SITE001")
    assert (site.name, site.timezone, site.grid_connection_limit_kw) == (
        "Demo ultrafast hub",
        "Europe/Berlin",
        400.0,
    )
    system = Equipment.objects.get(code="BESS1")
    assert system.kind == EquipmentKind.BATTERY_SYSTEM
    assert system.max_power_kw == 220.0
    units = list(system.children.order_by("code"))
    assert [(u.code, u.max_power_kw) for u in units] == [("BAT1", 110.0), ("BAT2", 110.0)]
    assert sum(u.capacity_kwh for u in units) == system.capacity_kwh
    charger = Equipment.objects.get(code="CHG1")
    assert (charger.kind, charger.max_power_kw, charger.connector_types) == (
        EquipmentKind.CHARGER,
        300.0,
        ["CCS2"],
    )
    assert Equipment.objects.get(code="MTR1").kind == EquipmentKind.METER
    for equipment in Equipment.objects.all():
        equipment.full_clean()


def test_seed_demo_registers_ctrl001_with_its_assets(monkeypatch):
    seed(monkeypatch)
    controller = Controller.objects.get(code="CTRL001")
    assert controller.site.code == "SITE001"
    assert (controller.serial, controller.model, controller.state) == (
        "CP-DEMO-0001",
        "ChargePost",
        ControllerState.REGISTERED,
    )
    assert {"BAT1", "BAT2", "CHG1"} <= {a.code for a in controller.assets.all()}


def test_seed_demo_takes_passwords_from_the_environment_and_prints_none(monkeypatch):
    out = seed(
        monkeypatch,
        ENEXA_DEMO_ADMIN_PASSWORD="a-long-admin-secret",
        ENEXA_DEMO_OPERATOR_PASSWORD="a-long-operator-secret",
    )
    users = get_user_model().objects
    admin = users.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert admin.check_password("a-long-admin-secret")
    operator = users.get(username="operator")
    assert not operator.is_staff
    assert operator.check_password("a-long-operator-secret")
    assert SiteMembership.objects.filter(user=operator, site__code="SITE001").exists()
    assert "secret" not in out


def test_seed_demo_prints_generated_passwords_once(monkeypatch):
    first = seed(monkeypatch)
    printed = [line for line in first.splitlines() if "password" in line]
    assert len(printed) == 2
    admin_password = printed[0].split("'")[3]
    assert get_user_model().objects.get(username="admin").check_password(admin_password)
    again = seed(monkeypatch)
    assert "password" not in again


def test_running_seed_demo_twice_changes_nothing(monkeypatch):
    seed(monkeypatch, ENEXA_DEMO_ADMIN_PASSWORD="a-long-admin-secret")
    before = snapshot()
    seed(monkeypatch, ENEXA_DEMO_ADMIN_PASSWORD="a-long-admin-secret")
    assert snapshot() == before


def test_seed_demo_leaves_an_edited_demo_alone(monkeypatch):
    seed(monkeypatch)
    Site.objects.filter(code="SITE001").update(name="Renamed by staff")
    seed(monkeypatch)
    assert Site.objects.get(code="SITE001").name == "Renamed by staff"


def test_the_seeded_operator_reads_the_demo_site_through_the_api(monkeypatch, anon_client):
    seed(monkeypatch, ENEXA_DEMO_OPERATOR_PASSWORD="a-long-operator-secret")
    tokens = anon_client.post(
        "/v1/auth/token",
        {"username": "operator", "password": "a-long-operator-secret"},
        format="json",
    ).json()
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    body = anon_client.get("/v1/sites/SITE001/equipment").json()
    assert [u["id"] for u in body["battery"]["units"]] == ["BAT1", "BAT2"]
    assert anon_client.get("/v1/controllers/CTRL001").json()["site_id"] == "SITE001"
