"""The asset registry API: contract shapes, scoping, validation, staff writes, filters, schema."""

from datetime import timedelta

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from enexa.registry.choices import ControllerState
from enexa.registry.models import Controller, Equipment, Site
from tests.factories import (
    BatterySystemFactory,
    BatteryUnitFactory,
    ChargerFactory,
    ControllerFactory,
    EquipmentFactory,
    SiteFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def chargepost(site):
    """SITE001 as the demo has it: two 110 kW units, a charger, a grid meter and CTRL001."""
    system = BatterySystemFactory(code="BESS1", site=site)
    BatteryUnitFactory(code="BAT1", site=site, parent=system)
    BatteryUnitFactory(code="BAT2", site=site, parent=system)
    charger = ChargerFactory(code="CHG1", site=site)
    EquipmentFactory(code="MTR1", site=site, max_power_kw=400.0, phases=3)
    controller = ControllerFactory(code="CTRL001", serial="CP-DEMO-0001", site=site)
    controller.assets.set([system.children.get(code="BAT1"), charger])
    return site


@pytest.fixture
def elsewhere(other_site):
    """SITE002 with a battery, a charger and CTRL002: none of it is the operator's."""
    system = BatterySystemFactory(code="BESS2", site=other_site)
    BatteryUnitFactory(code="BAT9", site=other_site, parent=system)
    ChargerFactory(code="CHG9", site=other_site)
    ControllerFactory(code="CTRL002", serial="CP-OTHER-0002", site=other_site)
    return other_site


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


READ_PATHS = [
    "/v1/sites",
    "/v1/sites/SITE001",
    "/v1/sites/SITE001/equipment",
    "/v1/controllers",
    "/v1/controllers/CTRL001",
    "/v1/equipment",
    "/v1/equipment/BAT1",
    "/v1/equipment/BAT1/specs",
]

OTHER_SITE_PATHS = [
    "/v1/sites/SITE002",
    "/v1/sites/SITE002/equipment",
    "/v1/controllers/CTRL002",
    "/v1/equipment/BAT9",
    "/v1/equipment/BAT9/specs",
]


# Shapes of the contract


def test_the_site_list_is_the_contracts_envelope_with_codes_as_ids(staff_client, chargepost):
    body = staff_client.get("/v1/sites").json()
    assert body["count"] == 1
    assert body["sites"][0]["id"] == "SITE001"
    assert body["sites"][0]["name"] == "Demo hub"
    assert body["sites"][0]["timezone"] == "Europe/Berlin"
    assert body["sites"][0]["grid_connection_limit_kw"] == 400.0


def test_a_site_detail_names_the_site_by_its_code(staff_client, chargepost):
    response = staff_client.get("/v1/sites/SITE001")
    assert response.status_code == 200
    assert response.json()["id"] == "SITE001"
    assert "pk" not in response.json()


def test_site_equipment_groups_the_battery_with_its_units_chargers_and_meters(
    staff_client, chargepost
):
    body = staff_client.get("/v1/sites/SITE001/equipment").json()
    assert set(body) == {"battery", "chargers", "meters"}
    assert body["battery"]["id"] == "BESS1"
    assert body["battery"]["specs"]["max_power_kw"] == 220.0
    units = body["battery"]["units"]
    assert [unit["id"] for unit in units] == ["BAT1", "BAT2"]
    assert all(unit["specs"]["max_power_kw"] == 110.0 for unit in units)
    assert all(unit["parent_id"] == "BESS1" for unit in units)
    assert [c["id"] for c in body["chargers"]] == ["CHG1"]
    assert body["chargers"][0]["specs"]["connector_types"] == ["CCS2"]
    assert [m["id"] for m in body["meters"]] == ["MTR1"]


def test_site_equipment_is_read_in_a_fixed_number_of_queries(
    staff_client, chargepost, django_assert_max_num_queries
):
    for n in range(6):
        BatteryUnitFactory(
            code=f"BAT{n + 10}", site=chargepost, parent=Equipment.objects.get(code="BESS1")
        )
    with django_assert_max_num_queries(8):
        body = staff_client.get("/v1/sites/SITE001/equipment").json()
    assert len(body["battery"]["units"]) == 8


def test_a_site_without_a_battery_answers_battery_null(staff_client, other_site):
    ChargerFactory(code="CHG5", site=other_site)
    body = staff_client.get("/v1/sites/SITE002/equipment").json()
    assert body == {"battery": None, "chargers": [body["chargers"][0]], "meters": []}
    assert body["chargers"][0]["id"] == "CHG5"


def test_a_controller_lists_its_site_and_assigned_assets_by_code(staff_client, chargepost):
    body = staff_client.get("/v1/controllers/CTRL001").json()
    assert body["id"] == "CTRL001"
    assert body["site_id"] == "SITE001"
    assert sorted(body["assets"]) == ["BAT1", "CHG1"]
    assert body["serial"] == "CP-DEMO-0001"
    assert body["state"] == ControllerState.ACTIVE


def test_equipment_specs_are_the_specifications_of_its_kind(staff_client, chargepost):
    body = staff_client.get("/v1/equipment/BAT1/specs").json()
    assert body == {
        "capacity_kwh": 140.0,
        "max_power_kw": 110.0,
        "max_charge_kw": 110.0,
        "max_discharge_kw": 110.0,
        "soc_min_pct": 5.0,
        "soc_max_pct": 95.0,
    }
    charger = staff_client.get("/v1/equipment/CHG1/specs").json()
    assert charger == {"max_power_kw": 300.0, "connector_types": ["CCS2"], "connector_count": 2}


def test_an_equipment_detail_carries_its_site_kind_and_specs(staff_client, chargepost):
    body = staff_client.get("/v1/equipment/BAT2").json()
    assert body["id"] == "BAT2"
    assert body["site_id"] == "SITE001"
    assert body["kind"] == "battery_unit"
    assert body["parent_id"] == "BESS1"
    assert body["specs"]["capacity_kwh"] == 140.0


# Authentication


@pytest.mark.parametrize("path", READ_PATHS)
def test_every_registry_endpoint_answers_401_without_a_token(anon_client, chargepost, path):
    response = anon_client.get(path)
    problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", READ_PATHS)
def test_every_registry_endpoint_answers_401_to_an_expired_token(staff, chargepost, path):
    token = AccessToken.for_user(staff)
    token.set_exp(lifetime=-timedelta(minutes=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    problem(client.get(path), 401)


def test_a_garbage_bearer_token_is_401(chargepost):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    problem(client.get("/v1/sites"), 401)


# Site scoping


def test_an_operator_lists_only_the_sites_they_are_a_member_of(
    operator_client, chargepost, elsewhere
):
    body = operator_client.get("/v1/sites").json()
    assert [s["id"] for s in body["sites"]] == ["SITE001"]
    assert body["count"] == 1


def test_an_operator_lists_only_their_sites_controllers_and_equipment(
    operator_client, chargepost, elsewhere
):
    controllers = operator_client.get("/v1/controllers").json()["controllers"]
    assert [c["id"] for c in controllers] == ["CTRL001"]
    equipment = operator_client.get("/v1/equipment").json()["equipment"]
    assert {e["site_id"] for e in equipment} == {"SITE001"}
    assert len(equipment) == 5


@pytest.mark.parametrize("path", READ_PATHS)
def test_an_operator_reads_every_resource_of_their_own_site(operator_client, chargepost, path):
    assert operator_client.get(path).status_code == 200


@pytest.mark.parametrize("path", OTHER_SITE_PATHS)
def test_another_sites_resources_are_404_for_an_operator(
    operator_client, chargepost, elsewhere, path
):
    problem(operator_client.get(path), 404)


@pytest.mark.parametrize("path", OTHER_SITE_PATHS)
def test_staff_see_every_sites_resources(staff_client, chargepost, elsewhere, path):
    assert staff_client.get(path).status_code == 200


def test_an_unknown_code_is_404(staff_client, chargepost):
    problem(staff_client.get("/v1/sites/SITE999"), 404)
    problem(staff_client.get("/v1/equipment/NOPE/specs"), 404)


def test_operators_cannot_write_the_registry(operator_client, chargepost):
    problem(
        operator_client.post(
            "/v1/sites",
            {"id": "SITE009", "name": "x", "grid_connection_limit_kw": 10},
            format="json",
        ),
        403,
    )
    problem(operator_client.patch("/v1/sites/SITE001", {"name": "Mine"}, format="json"), 403)
    problem(operator_client.delete("/v1/equipment/CHG1"), 403)
    assert Site.objects.get(code="SITE001").name == "Demo hub"
    assert Equipment.objects.filter(code="CHG1").exists()


# Staff writes


def test_staff_create_update_and_delete_a_site(staff_client):
    created = staff_client.post(
        "/v1/sites",
        {
            "id": "SITE010",
            "name": "Autobahn hub",
            "timezone": "Europe/Berlin",
            "grid_connection_limit_kw": 630,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["id"] == "SITE010"
    updated = staff_client.patch("/v1/sites/SITE010", {"name": "A8 hub"}, format="json")
    assert updated.status_code == 200
    assert updated.json()["name"] == "A8 hub"
    assert staff_client.delete("/v1/sites/SITE010").status_code == 204
    problem(staff_client.get("/v1/sites/SITE010"), 404)


def test_a_site_with_controllers_cannot_be_deleted(staff_client, chargepost):
    body = problem(staff_client.delete("/v1/sites/SITE001"), 409)
    assert "CTRL001" in body["detail"]
    assert Site.objects.filter(code="SITE001").exists()


def test_staff_register_a_battery_unit_with_its_specs(staff_client, chargepost):
    response = staff_client.post(
        "/v1/equipment",
        {
            "id": "BAT3",
            "site_id": "SITE001",
            "kind": "battery_unit",
            "parent_id": "BESS1",
            "model": "ChargePost battery unit",
            "specs": {
                "capacity_kwh": 100,
                "max_power_kw": 110,
                "soc_min_pct": 10,
                "soc_max_pct": 90,
            },
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["specs"] == {
        "capacity_kwh": 100.0,
        "max_power_kw": 110.0,
        "soc_min_pct": 10.0,
        "soc_max_pct": 90.0,
    }
    assert Equipment.objects.get(code="BAT3").parent.code == "BESS1"


def test_staff_update_an_assets_specs_partially(staff_client, chargepost):
    response = staff_client.patch(
        "/v1/equipment/CHG1", {"specs": {"max_power_kw": 150}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert staff_client.get("/v1/equipment/CHG1/specs").json() == {
        "max_power_kw": 150.0,
        "connector_types": ["CCS2"],
        "connector_count": 2,
    }


def test_staff_delete_equipment(staff_client, chargepost):
    assert staff_client.delete("/v1/equipment/MTR1").status_code == 204
    problem(staff_client.get("/v1/equipment/MTR1"), 404)


def test_staff_pre_register_a_controller_by_serial_and_it_gets_the_next_code(
    staff_client, chargepost
):
    response = staff_client.post(
        "/v1/controllers",
        {"serial": "CP-2026-0042", "site_id": "SITE001", "model": "ChargePost", "assets": ["BAT2"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == "CTRL002"
    assert body["state"] == ControllerState.PENDING
    assert body["assets"] == ["BAT2"]


def test_a_controllers_state_and_firmware_cannot_be_set_through_the_api(staff_client, chargepost):
    created = staff_client.post(
        "/v1/controllers",
        {
            "id": "CTRL005",
            "serial": "CP-5",
            "site_id": "SITE001",
            "state": "active",
            "firmware_version": "9.9.9",
        },
        format="json",
    ).json()
    assert created["state"] == ControllerState.PENDING
    assert created["firmware_version"] == ""
    patched = staff_client.patch(
        "/v1/controllers/CTRL001", {"state": "decommissioned"}, format="json"
    )
    assert patched.status_code == 200
    assert Controller.objects.get(code="CTRL001").state == ControllerState.ACTIVE


def test_staff_reassign_a_controllers_assets_and_delete_it(staff_client, chargepost):
    response = staff_client.patch(
        "/v1/controllers/CTRL001", {"assets": ["BAT1", "BAT2", "CHG1", "MTR1"]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert sorted(response.json()["assets"]) == ["BAT1", "BAT2", "CHG1", "MTR1"]
    assert staff_client.delete("/v1/controllers/CTRL001").status_code == 204
    problem(staff_client.get("/v1/controllers/CTRL001"), 404)


# Validation


def test_a_negative_capacity_is_a_field_error(staff_client, chargepost):
    body = problem(
        staff_client.patch("/v1/equipment/BAT1", {"specs": {"capacity_kwh": -5}}, format="json"),
        400,
    )
    assert list(body["errors"]) == ["specs.capacity_kwh"]


def test_soc_min_above_max_is_a_field_error(staff_client, chargepost):
    body = problem(
        staff_client.patch(
            "/v1/equipment/BAT1", {"specs": {"soc_min_pct": 90, "soc_max_pct": 20}}, format="json"
        ),
        400,
    )
    assert body["errors"] == {"specs.soc_min_pct": ["Must be below soc_max_pct."]}
    assert Equipment.objects.get(code="BAT1").soc_min_pct == 5.0


def test_a_duplicate_site_code_is_a_field_error(staff_client, chargepost):
    body = problem(
        staff_client.post(
            "/v1/sites",
            {"id": "SITE001", "name": "Again", "grid_connection_limit_kw": 100},
            format="json",
        ),
        400,
    )
    assert "id" in body["errors"]


def test_a_duplicate_equipment_code_is_a_field_error(staff_client, chargepost):
    body = problem(
        staff_client.post(
            "/v1/equipment", {"id": "CHG1", "site_id": "SITE001", "kind": "charger"}, format="json"
        ),
        400,
    )
    assert "id" in body["errors"]


def test_a_duplicate_controller_serial_is_a_field_error(staff_client, chargepost):
    body = problem(
        staff_client.post(
            "/v1/controllers", {"serial": "CP-DEMO-0001", "site_id": "SITE001"}, format="json"
        ),
        400,
    )
    assert "serial" in body["errors"]


def test_model_rules_surface_as_field_errors_named_as_on_the_wire(staff_client, chargepost):
    second_battery = problem(
        staff_client.post(
            "/v1/equipment",
            {"id": "BESS7", "site_id": "SITE001", "kind": "battery_system"},
            format="json",
        ),
        400,
    )
    assert "kind" in second_battery["errors"]
    orphan_unit = problem(
        staff_client.post(
            "/v1/equipment",
            {"id": "BAT7", "site_id": "SITE001", "kind": "battery_unit"},
            format="json",
        ),
        400,
    )
    assert "parent_id" in orphan_unit["errors"]
    wrong_specs = problem(
        staff_client.post(
            "/v1/equipment",
            {
                "id": "MTR7",
                "site_id": "SITE001",
                "kind": "meter",
                "specs": {"capacity_kwh": 10, "connector_types": ["CCS9"]},
            },
            format="json",
        ),
        400,
    )
    assert "specs.connector_types.0" in wrong_specs["errors"]
    bad_site = problem(
        staff_client.post(
            "/v1/sites",
            {
                "id": "site 1",
                "name": "x",
                "timezone": "Mars/Olympus",
                "grid_connection_limit_kw": -1,
            },
            format="json",
        ),
        400,
    )
    assert {"id", "timezone", "grid_connection_limit_kw"} <= set(bad_site["errors"])


def test_a_spec_that_does_not_apply_to_the_kind_is_refused(staff_client, chargepost):
    body = problem(
        staff_client.patch("/v1/equipment/MTR1", {"specs": {"capacity_kwh": 10}}, format="json"),
        400,
    )
    assert body["errors"] == {"specs.capacity_kwh": ["Does not apply to a meter."]}


def test_codes_site_and_kind_are_fixed_once_created(staff_client, chargepost, other_site):
    body = problem(
        staff_client.patch(
            "/v1/equipment/CHG1",
            {"id": "CHG2", "site_id": "SITE002", "kind": "meter"},
            format="json",
        ),
        400,
    )
    assert set(body["errors"]) == {"id", "site_id", "kind"}
    body = problem(staff_client.patch("/v1/sites/SITE001", {"id": "SITE003"}, format="json"), 400)
    assert body["errors"] == {"id": ["Cannot be changed."]}


def test_a_controller_cannot_drive_another_sites_equipment(staff_client, chargepost, elsewhere):
    body = problem(
        staff_client.patch("/v1/controllers/CTRL001", {"assets": ["BAT1", "BAT9"]}, format="json"),
        400,
    )
    assert body["errors"] == {"assets": ["Not equipment of SITE001: BAT9."]}


def test_an_unknown_site_reference_is_a_field_error(staff_client):
    body = problem(
        staff_client.post("/v1/controllers", {"serial": "X", "site_id": "SITE404"}, format="json"),
        400,
    )
    assert "site_id" in body["errors"]


def test_malformed_json_is_a_400_problem(staff_client):
    response = staff_client.generic(
        "POST", "/v1/sites", "{not json", content_type="application/json"
    )
    problem(response, 400)


# Filters and pagination


def test_equipment_filters_by_site_kind_and_parent(staff_client, chargepost, elsewhere):
    def codes(query: str) -> list[str]:
        return [e["id"] for e in staff_client.get(f"/v1/equipment?{query}").json()["equipment"]]

    assert codes("kind=charger") == ["CHG1", "CHG9"]
    assert codes("site_id=SITE001&kind=battery_unit") == ["BAT1", "BAT2"]
    assert codes("parent_id=BESS2") == ["BAT9"]
    assert codes("kind=meter&kind=charger&site_id=SITE002") == ["CHG9"]
    assert codes("q=chg9") == ["CHG9"]


def test_controllers_filter_by_site_and_state(staff_client, chargepost, elsewhere):
    ControllerFactory(code="CTRL003", site=chargepost, state=ControllerState.PENDING)

    def codes(query: str) -> list[str]:
        return [c["id"] for c in staff_client.get(f"/v1/controllers?{query}").json()["controllers"]]

    assert codes("site_id=SITE001") == ["CTRL001", "CTRL003"]
    assert codes("state=pending") == ["CTRL003"]
    assert codes("serial=CP-OTHER-0002") == ["CTRL002"]


def test_sites_filter_by_text(staff_client, chargepost, elsewhere):
    body = staff_client.get("/v1/sites?q=other").json()
    assert [s["id"] for s in body["sites"]] == ["SITE002"]


def test_an_invalid_filter_value_is_a_400_problem(staff_client, chargepost):
    body = problem(staff_client.get("/v1/controllers?state=sleeping"), 400)
    assert "state" in body["errors"]


def test_lists_are_paginated_with_next_links(staff_client):
    for n in range(5):
        SiteFactory(code=f"SITE{n + 20:03d}")
    first = staff_client.get("/v1/sites?page_size=2").json()
    assert first["count"] == 5
    assert [s["id"] for s in first["sites"]] == ["SITE020", "SITE021"]
    assert first["previous"] is None
    second = staff_client.get(first["next"]).json()
    assert [s["id"] for s in second["sites"]] == ["SITE022", "SITE023"]
    last = staff_client.get("/v1/sites?page_size=2&page=3").json()
    assert last["next"] is None
    problem(staff_client.get("/v1/sites?page_size=2&page=9"), 404)


# OpenAPI


def test_the_openapi_schema_describes_the_registry_endpoints(anon_client):
    response = anon_client.get("/v1/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path, methods in {
        "/v1/sites": {"get", "post"},
        "/v1/sites/{site_id}": {"get", "patch", "delete"},
        "/v1/sites/{site_id}/equipment": {"get"},
        "/v1/controllers": {"get", "post"},
        "/v1/controllers/{controller_id}": {"get", "patch", "delete"},
        "/v1/equipment": {"get", "post"},
        "/v1/equipment/{asset_id}": {"get", "patch", "delete"},
        "/v1/equipment/{asset_id}/specs": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
    detail = paths["/v1/equipment/{asset_id}"]
    assert {"200", "401", "404"} <= set(detail["get"]["responses"])
    assert "application/problem+json" in detail["patch"]["responses"]["400"]["content"]
    schemas = response.json()["components"]["schemas"]
    assert {"battery", "chargers", "meters"} <= set(schemas["SiteEquipment"]["properties"])
    assert "sites" in schemas["PaginatedSiteList"]["properties"]


def test_the_registry_views_generate_the_schema_without_warnings_or_errors():
    GENERATOR_STATS.reset()
    SchemaGenerator().get_schema(request=None, public=True)
    messages = [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
    assert [m for m in messages if "enexa/registry/" in m] == []
