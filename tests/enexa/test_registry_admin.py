"""The web admin of the registry: every list, add and change page renders and saves."""

import pytest

from enexa.registry.choices import ControllerState, EquipmentKind
from enexa.registry.models import Controller, Equipment, Site, SiteMembership
from tests.factories import (
    BatterySystemFactory,
    BatteryUnitFactory,
    ChargerFactory,
    ControllerFactory,
    EquipmentFactory,
    MembershipFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def chargepost(site):
    system = BatterySystemFactory(code="BESS1", site=site)
    BatteryUnitFactory(code="BAT1", site=site, parent=system)
    ChargerFactory(code="CHG1", site=site)
    EquipmentFactory(code="MTR1", site=site, phases=3)
    ControllerFactory(code="CTRL001", serial="CP-DEMO-0001", site=site)
    MembershipFactory(site=site)
    return site


def current_form_data(response) -> dict:
    """The POST body the page would send unchanged: main form, inlines and management forms."""
    forms = [response.context["adminform"].form]
    data: dict = {}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        forms.extend(formset.forms)
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            data[form.add_prefix(name)] = "on" if value is True else value
    return data


def assert_saved(response) -> None:
    """A successful admin save redirects; a failed one re-renders the form with its errors."""
    if response.status_code != 302:
        errors = [response.context["adminform"].form.errors]
        errors += [fs.formset.errors for fs in response.context["inline_admin_formsets"]]
        pytest.fail(f"not saved: {errors}")


MODELS = ["site", "equipment", "controller", "sitemembership"]


@pytest.mark.parametrize("model", MODELS)
def test_every_registry_list_renders_with_search_and_filters(admin_client, chargepost, model):
    response = admin_client.get(f"/admin/registry/{model}/?q=SITE001")
    assert response.status_code == 200
    changelist = response.context["cl"]
    assert changelist.search_fields
    assert changelist.has_filters
    assert changelist.result_count >= 1


@pytest.mark.parametrize("model", MODELS)
def test_every_registry_add_page_renders(admin_client, chargepost, model):
    assert admin_client.get(f"/admin/registry/{model}/add/").status_code == 200


def test_the_site_page_shows_its_equipment_and_controllers_inline(admin_client, chargepost):
    response = admin_client.get(f"/admin/registry/site/{chargepost.pk}/change/")
    assert response.status_code == 200
    inlines = {fs.formset.prefix: fs.formset for fs in response.context["inline_admin_formsets"]}
    assert {"equipment", "controllers", "memberships"} <= set(inlines)
    assert {f.instance.code for f in inlines["equipment"].forms} == {
        "BESS1",
        "BAT1",
        "CHG1",
        "MTR1",
    }
    assert [f.instance.code for f in inlines["controllers"].forms] == ["CTRL001"]
    assert b"max_power_kw" in response.content


def test_a_site_is_added_with_a_charger_inline(admin_client):
    page = admin_client.get("/admin/registry/site/add/")
    data = current_form_data(page)
    data.update(
        {
            "code": "SITE050",
            "name": "Admin hub",
            "timezone": "Europe/Berlin",
            "grid_connection_limit_kw": "250",
            "equipment-TOTAL_FORMS": "1",
            "equipment-0-code": "CHG50",
            "equipment-0-kind": EquipmentKind.CHARGER,
            "equipment-0-manufacturer": "ADS-TEC",
            "equipment-0-max_power_kw": "300",
            "equipment-0-connector_types": ["CCS2"],
            "equipment-0-connector_count": "2",
        }
    )
    assert_saved(admin_client.post("/admin/registry/site/add/", data))
    site = Site.objects.get(code="SITE050")
    charger = site.equipment.get()
    assert (charger.code, charger.max_power_kw, charger.connector_types) == (
        "CHG50",
        300.0,
        ["CCS2"],
    )


def test_a_sites_inline_specs_are_editable_and_saved(admin_client, chargepost):
    url = f"/admin/registry/site/{chargepost.pk}/change/"
    page = admin_client.get(url)
    data = current_form_data(page)
    codes = {
        form.instance.code: index
        for index, form in enumerate(page.context["inline_admin_formsets"][0].formset.forms)
    }
    data[f"equipment-{codes['BAT1']}-capacity_kwh"] = "120"
    data["name"] = "Renamed hub"
    assert_saved(admin_client.post(url, data))
    assert Site.objects.get(pk=chargepost.pk).name == "Renamed hub"
    assert Equipment.objects.get(code="BAT1").capacity_kwh == 120.0


def test_the_admin_refuses_nonsense_specs_with_a_field_error(admin_client, chargepost):
    unit = Equipment.objects.get(code="BAT1")
    url = f"/admin/registry/equipment/{unit.pk}/change/"
    data = current_form_data(admin_client.get(url))
    data.update({"soc_min_pct": "90", "soc_max_pct": "10"})
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "soc_min_pct" in response.context["adminform"].form.errors
    assert Equipment.objects.get(code="BAT1").soc_min_pct == 5.0


def test_equipment_is_added_and_its_specs_changed_in_the_admin(admin_client, chargepost):
    page = admin_client.get("/admin/registry/equipment/add/")
    data = current_form_data(page)
    data.update(
        {
            "code": "BAT2",
            "site": str(chargepost.pk),
            "kind": EquipmentKind.BATTERY_UNIT,
            "parent": str(Equipment.objects.get(code="BESS1").pk),
            "manufacturer": "ADS-TEC",
            "capacity_kwh": "100",
            "max_power_kw": "110",
            "soc_min_pct": "5",
            "soc_max_pct": "95",
        }
    )
    assert_saved(admin_client.post("/admin/registry/equipment/add/", data))
    unit = Equipment.objects.get(code="BAT2")
    assert unit.parent.code == "BESS1"

    url = f"/admin/registry/equipment/{unit.pk}/change/"
    data = current_form_data(admin_client.get(url))
    data["max_power_kw"] = "100"
    assert_saved(admin_client.post(url, data))
    assert Equipment.objects.get(code="BAT2").max_power_kw == 100.0


def test_a_controller_is_pre_registered_and_assigned_assets_in_the_admin(admin_client, chargepost):
    page = admin_client.get("/admin/registry/controller/add/")
    data = current_form_data(page)
    bat1 = Equipment.objects.get(code="BAT1")
    data.update(
        {
            "code": "CTRL002",
            "serial": "CP-2026-0002",
            "site": str(chargepost.pk),
            "model": "ChargePost",
            "assets": [str(bat1.pk)],
        }
    )
    assert_saved(admin_client.post("/admin/registry/controller/add/", data))
    controller = Controller.objects.get(code="CTRL002")
    assert controller.state == ControllerState.PENDING
    assert [a.code for a in controller.assets.all()] == ["BAT1"]

    url = f"/admin/registry/controller/{controller.pk}/change/"
    data = current_form_data(admin_client.get(url))
    data["model"] = "ChargePost 2"
    assert_saved(admin_client.post(url, data))
    assert Controller.objects.get(code="CTRL002").model == "ChargePost 2"


def test_the_admin_refuses_another_sites_equipment_for_a_controller(
    admin_client, chargepost, other_site
):
    foreign = ChargerFactory(code="CHG9", site=other_site)
    controller = Controller.objects.get(code="CTRL001")
    url = f"/admin/registry/controller/{controller.pk}/change/"
    data = current_form_data(admin_client.get(url))
    data["assets"] = [str(foreign.pk)]
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "assets" in response.context["adminform"].form.errors
    assert not controller.assets.exists()


def test_a_membership_is_added_and_changed_in_the_admin(admin_client, chargepost):
    user = UserFactory(username="viewer1")
    data = current_form_data(admin_client.get("/admin/registry/sitemembership/add/"))
    data.update({"user": str(user.pk), "site": str(chargepost.pk), "role": "viewer"})
    assert_saved(admin_client.post("/admin/registry/sitemembership/add/", data))
    membership = SiteMembership.objects.get(user=user)

    url = f"/admin/registry/sitemembership/{membership.pk}/change/"
    data = current_form_data(admin_client.get(url))
    data["role"] = "operator"
    assert_saved(admin_client.post(url, data))
    assert SiteMembership.objects.get(pk=membership.pk).role == "operator"
