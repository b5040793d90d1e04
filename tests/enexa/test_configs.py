"""Versioned configuration: defaults and limits, versions from both levels, ETags, If-Match,
validation, history, diff, rollback and the applied version."""

import importlib

import pytest
from rest_framework.test import APIClient

from enexa.configs import services
from enexa.configs.models import ConfigVersion, ControllerConfig, SiteConfig
from tests.conftest import controller_client, jwt_client
from tests.factories import (
    BatteryUnitFactory,
    ControllerFactory,
    MembershipFactory,
    SiteFactory,
    UserFactory,
)


@pytest.fixture
def controller(equipped_site):
    return ControllerFactory(site=equipped_site, code="CTRL001")


def versions_of(controller) -> list[int]:
    return list(
        ConfigVersion.objects.filter(controller=controller)
        .order_by("number")
        .values_list("number", flat=True)
    )


def test_a_new_controller_starts_at_version_1_with_defaults_and_registry_limits(
    controller, staff_client
):
    response = staff_client.get("/v1/controllers/CTRL001/config")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1
    assert response["ETag"] == '"1"'
    assert body["limits"]["battery"]["max_charge_kw"] == 220.0  # 2 x 110 kW units
    assert body["limits"]["battery"]["units"]["BAT1"]["max_discharge_kw"] == 110.0
    assert body["limits"]["chargers"] == {"CHG1": {"max_power_kw": 300.0}}
    assert body["limits"]["grid"] == {"limit_kw": 400.0}
    settings = body["settings"]
    assert settings["watchdog"] == {"interval_s": 10, "timeout_s": 30}
    assert settings["telemetry"]["interval_s"] == 5
    assert settings["autonomy"] == {"enter_after_s": 60, "mode": "follow_schedule_then_safe"}
    assert settings["battery"]["max_discharge_kw"] == 220.0
    assert settings["grid"]["limit_kw"] == 400.0
    assert {"config_poll_interval_s", "setpoint_validity_s", "status", "firmware"} <= set(settings)
    assert "modbus" not in settings  # the gateway's environment decides until staff set it


def test_the_version_poll_is_one_read_and_writes_nothing(controller, django_assert_num_queries):
    with django_assert_num_queries(1) as queries:
        version, updated_at = services.current_version(controller.pk)
    assert version == 1 and updated_at is not None
    assert queries.captured_queries[0]["sql"].lstrip().upper().startswith("SELECT")


def test_a_controller_polls_its_version_and_gets_304_for_an_unchanged_config(controller):
    client = controller_client(controller)
    poll = client.get("/v1/controllers/CTRL001/config/version")
    assert poll.status_code == 200
    assert poll.json()["version"] == 1 and poll.json()["updated_at"]
    unchanged = client.get("/v1/controllers/CTRL001/config", HTTP_IF_NONE_MATCH='"1"')
    assert unchanged.status_code == 304
    assert unchanged["ETag"] == '"1"'
    services.update_site_config(
        controller.site, {"telemetry": {"interval_s": 10}}, if_match=None, by="test"
    )
    changed = client.get("/v1/controllers/CTRL001/config", HTTP_IF_NONE_MATCH='"1"')
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    assert changed.json()["settings"]["telemetry"]["interval_s"] == 10


def test_a_site_change_bumps_every_controller_of_the_site_and_no_other(
    controller, staff_client, other_site
):
    second = ControllerFactory(site=controller.site, code="CTRL002")
    elsewhere = ControllerFactory(site=other_site, code="CTRL900")
    response = staff_client.patch(
        "/v1/config/SITE001",
        {"battery": {"reserve_pct": 30}},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    assert response.status_code == 200, response.json()
    assert response["ETag"] == '"2"'
    assert response.json()["battery"]["reserve_pct"] == 30
    assert versions_of(controller) == [1, 2]
    assert versions_of(second) == [1, 2]
    assert versions_of(elsewhere) == [1]
    assert services.effective_config_for(second)["settings"]["battery"]["reserve_pct"] == 30


def test_a_controller_override_bumps_only_that_controller_and_wins_over_the_site(
    controller, staff_client
):
    second = ControllerFactory(site=controller.site, code="CTRL002")
    staff_client.patch(
        "/v1/config/SITE001", {"watchdog": {"interval_s": 15}}, format="json", HTTP_IF_MATCH='"1"'
    )
    response = staff_client.patch(
        "/v1/controllers/CTRL001/config",
        {"watchdog": {"interval_s": 5}},
        format="json",
        HTTP_IF_MATCH='"2"',
    )
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 3
    assert response.json()["settings"]["watchdog"] == {"interval_s": 5, "timeout_s": 30}
    assert versions_of(second) == [1, 2]
    # null removes the override: the site's value applies again.
    back = staff_client.patch(
        "/v1/controllers/CTRL001/config",
        {"watchdog": {"interval_s": None}},
        format="json",
        HTTP_IF_MATCH='"3"',
    )
    assert back.json()["version"] == 4
    assert back.json()["settings"]["watchdog"]["interval_s"] == 15


def test_a_stale_if_match_answers_412_and_changes_nothing(controller, staff_client):
    services.update_site_config(
        controller.site, {"grid": {"limit_kw": 300}}, if_match=None, by="test"
    )
    stale = staff_client.patch(
        "/v1/controllers/CTRL001/config",
        {"telemetry": {"interval_s": 2}},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    assert stale.status_code == 412
    assert stale["Content-Type"] == "application/problem+json"
    stale_site = staff_client.put("/v1/config/SITE001", {}, format="json", HTTP_IF_MATCH='"1"')
    assert stale_site.status_code == 412
    assert versions_of(controller) == [1, 2]


def test_a_write_without_if_match_answers_428(controller, staff_client):
    response = staff_client.patch(
        "/v1/controllers/CTRL001/config", {"telemetry": {"interval_s": 2}}, format="json"
    )
    assert response.status_code == 428
    assert versions_of(controller) == [1]


def test_replaying_an_applied_change_returns_the_result_instead_of_412(controller, staff_client):
    change = {"telemetry": {"batch_size": 50}}
    first = staff_client.patch("/v1/config/SITE001", change, format="json", HTTP_IF_MATCH='"1"')
    again = staff_client.patch("/v1/config/SITE001", change, format="json", HTTP_IF_MATCH='"1"')
    assert first.status_code == again.status_code == 200
    assert again.json()["revision"] == 2
    assert versions_of(controller) == [1, 2]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"battery": {"max_discharge_kw": 250}}, "battery.max_discharge_kw"),
        ({"battery": {"soc_min_pct": 60, "soc_max_pct": 50}}, "battery.soc_min_pct"),
        ({"battery": {"soc_min_pct": 2}}, "battery.soc_min_pct"),
        ({"watchdog": {"interval_s": 1}}, "watchdog.interval_s"),
        ({"watchdog": {"interval_s": 61}}, "watchdog.interval_s"),
        ({"watchdog": {"interval_s": 20, "timeout_s": 30}}, "watchdog.timeout_s"),
        ({"modbus": {"port": 5020}}, "modbus.host"),
        ({"grid": {"limit_kw": 500}}, "grid.limit_kw"),
        ({"telemetry": {"interval_s": "fast"}}, "telemetry.interval_s"),
        ({"surprise": 1}, "surprise"),
        ({"tariff": {"import_eur_per_kwh": 0.25}}, "tariff.import_eur_per_kwh"),  # unknown
        ({"tariff": {"peak_to_hour": 25}}, "tariff.peak_to_hour"),
    ],
)
def test_a_setting_breaking_a_rule_or_the_equipment_is_refused_with_a_field_error(
    controller, staff_client, change, field
):
    for url, if_match in [("/v1/config/SITE001", '"1"'), ("/v1/controllers/CTRL001/config", '"1"')]:
        response = staff_client.patch(url, change, format="json", HTTP_IF_MATCH=if_match)
        assert response.status_code == 400, (url, response.json())
        assert field in response.json()["errors"], response.json()
    assert versions_of(controller) == [1]


def test_a_site_change_that_breaks_a_controller_override_is_refused(controller, staff_client):
    services.update_controller_config(
        controller, {"battery": {"soc_min_pct": 40}}, if_match=None, by="test"
    )
    response = staff_client.patch(
        "/v1/config/SITE001", {"battery": {"soc_max_pct": 35}}, format="json", HTTP_IF_MATCH='"1"'
    )
    assert response.status_code == 400
    assert "CTRL001" in str(response.json()["errors"])
    assert versions_of(controller) == [1, 2]


def test_history_lists_shows_and_diffs_versions(controller, staff_client):
    services.update_site_config(
        controller.site, {"battery": {"reserve_pct": 30}}, if_match=None, by="user:alice"
    )
    listing = staff_client.get("/v1/controllers/CTRL001/config/versions")
    assert listing.status_code == 200
    assert [v["version"] for v in listing.json()["versions"]] == [2, 1]
    assert listing.json()["versions"][0]["created_by"] == "user:alice"
    one = staff_client.get("/v1/controllers/CTRL001/config/versions/1")
    assert one.json()["settings"]["battery"]["reserve_pct"] == 20.0
    diff = staff_client.get("/v1/controllers/CTRL001/config/versions/2/diff?against=1")
    assert diff.json() == {
        "from": 1,
        "to": 2,
        "changes": [{"path": "settings.battery.reserve_pct", "from": 20.0, "to": 30}],
    }
    assert staff_client.get("/v1/controllers/CTRL001/config/versions/9").status_code == 404


def test_a_rollback_is_a_new_version_equal_to_the_old_one(controller, staff_client):
    services.update_site_config(
        controller.site, {"watchdog": {"interval_s": 15}}, if_match=None, by="test"
    )
    services.update_controller_config(
        controller, {"telemetry": {"interval_s": 60}}, if_match=None, by="test"
    )
    response = staff_client.post("/v1/controllers/CTRL001/config/versions/1/restore")
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 4
    assert response["ETag"] == '"4"'
    restored = services.get_version(controller, 4)
    assert restored.settings == services.get_version(controller, 1).settings
    assert restored.reason == "restore of version 1"
    assert services.diff_versions(services.get_version(controller, 1), restored) == []


def test_restoring_a_version_stored_with_a_retired_setting_does_not_bring_it_back(controller):
    old = services.get_version(controller, 1)
    # As stored before the setting went (versions are immutable to the model, not the table).
    ConfigVersion.objects.filter(pk=old.pk).update(
        settings={**old.settings, "tariff": {"currency": "EUR"}, "surcharge": {"eur": 1}}
    )
    services.update_controller_config(
        controller, {"telemetry": {"interval_s": 60}}, if_match=None, by="test"
    )
    restored = services.restore_version(controller, 1, by="test")
    assert "surcharge" not in restored["settings"]
    assert "currency" not in restored["settings"]["tariff"]  # a key of a section retired too
    assert restored["settings"]["telemetry"]["interval_s"] == 5
    overrides = ControllerConfig.objects.get(controller=controller).overrides
    assert "surcharge" not in overrides and "tariff" not in overrides


def test_the_migration_removes_the_retired_tariff_from_stored_documents(controller):
    from django.apps import apps

    drop_retired = importlib.import_module("enexa.configs.migrations.0002_drop_tariff").drop_retired
    SiteConfig.objects.create(
        site=controller.site, settings={"tariff": {"currency": "EUR"}, "grid": {"limit_kw": 300}}
    )
    ControllerConfig.objects.create(controller=controller, overrides={"tariff": {}})
    drop_retired(apps, None)
    assert SiteConfig.objects.get().settings == {"grid": {"limit_kw": 300}}
    assert ControllerConfig.objects.get().overrides == {}


def test_an_equipment_change_creates_a_version_with_the_new_limits(controller):
    BatteryUnitFactory(
        site=controller.site, code="BAT3", parent=controller.site.equipment.get(code="BAT1").parent
    )
    config = services.effective_config_for(controller)
    assert config["version"] == 2
    assert config["limits"]["battery"]["max_charge_kw"] == 220.0  # capped by the system spec
    assert set(config["limits"]["battery"]["units"]) == {"BAT1", "BAT2", "BAT3"}


def test_staff_see_when_a_controller_has_not_applied_the_current_version(controller, staff_client):
    services.record_applied_version(controller.pk, 1)
    assert staff_client.get("/v1/controllers/CTRL001/config/state").json()["drift"] is False
    services.update_site_config(
        controller.site, {"status": {"interval_s": 60}}, if_match=None, by="test"
    )
    state = staff_client.get("/v1/controllers/CTRL001/config/state").json()
    assert state["version"] == 2 and state["applied_version"] == 1
    assert state["drift"] is True


def test_the_site_document_carries_the_site_settings_and_its_revision(controller, staff_client):
    response = staff_client.get("/v1/config/SITE001")
    assert response.status_code == 200
    body = response.json()
    assert body["site_id"] == "SITE001"
    assert {"battery", "grid", "status", "watchdog", "telemetry", "autonomy"} <= set(body)
    assert (
        staff_client.get("/v1/config/SITE001", HTTP_IF_NONE_MATCH=response["ETag"]).status_code
        == 304
    )
    # What GET answers can be PUT back unchanged: no new version.
    put = staff_client.put(
        "/v1/config/SITE001", body, format="json", HTTP_IF_MATCH=response["ETag"]
    )
    assert put.status_code == 200, put.json()
    assert versions_of(controller) == [1]


def test_a_controller_reads_only_its_own_config_and_cannot_write(controller, other_site):
    neighbour = ControllerFactory(site=controller.site, code="CTRL002")
    ControllerFactory(site=other_site, code="CTRL900")
    client = controller_client(controller)
    assert client.get("/v1/controllers/CTRL001/config").status_code == 200
    assert client.get("/v1/config/SITE001").status_code == 200
    for code in (neighbour.code, "CTRL900"):
        assert client.get(f"/v1/controllers/{code}/config").status_code == 404
        assert client.get(f"/v1/controllers/{code}/config/version").status_code == 404
    assert client.get("/v1/config/SITE002").status_code == 404
    write = client.patch(
        "/v1/controllers/CTRL001/config",
        {"watchdog": {"interval_s": 5}},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    assert write.status_code == 403


def test_operators_configure_their_site_viewers_only_read_and_others_see_nothing(
    controller, operator_client, other_site
):
    ControllerFactory(site=other_site, code="CTRL900")
    ok = operator_client.patch(
        "/v1/config/SITE001", {"grid": {"limit_kw": 350}}, format="json", HTTP_IF_MATCH='"1"'
    )
    assert ok.status_code == 200, ok.json()
    assert operator_client.get("/v1/config/SITE002").status_code == 404
    assert operator_client.get("/v1/controllers/CTRL900/config/version").status_code == 404
    viewer = UserFactory(username="viewer")
    MembershipFactory(user=viewer, site=controller.site, role="viewer")
    client = jwt_client(viewer)
    assert client.get("/v1/controllers/CTRL001/config").status_code == 200
    refused = client.patch(
        "/v1/config/SITE001", {"grid": {"limit_kw": 300}}, format="json", HTTP_IF_MATCH='"2"'
    )
    assert refused.status_code == 403
    assert APIClient().get("/v1/controllers/CTRL001/config").status_code == 401


def test_a_site_without_equipment_still_gets_a_complete_config(db):
    bare = ControllerFactory(site=SiteFactory(code="SITE777"), code="CTRL777")
    config = services.effective_config_for(bare)
    assert config["limits"]["battery"]["max_charge_kw"] == 0.0
    assert config["limits"]["chargers"] == {}
    assert config["settings"]["battery"]["soc_min_pct"] == 10.0


def test_a_modbus_endpoint_set_for_the_site_reaches_the_gateway(controller, staff_client):
    response = staff_client.patch(
        "/v1/config/SITE001",
        {"modbus": {"host": "10.0.0.5", "port": 5020}},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    assert response.status_code == 200, response.json()
    settings = services.effective_config_for(controller)["settings"]
    assert settings["modbus"] == {"host": "10.0.0.5", "port": 5020}


def test_a_site_with_several_chargeposts_lists_their_modbus_units(controller, staff_client):
    units = [{"host": "10.0.0.5", "port": 502}, {"host": "10.0.0.6", "device_id": 2}]
    response = staff_client.patch(
        "/v1/config/SITE001", {"modbus": units}, format="json", HTTP_IF_MATCH='"1"'
    )
    assert response.status_code == 200, response.json()
    assert response.json()["modbus"] == units
    assert services.effective_config_for(controller)["settings"]["modbus"] == units
    # A list replaces whatever was there, also when one unit's address is patched back.
    response = staff_client.patch(
        "/v1/config/SITE001", {"modbus": {"host": "10.0.0.7"}}, format="json", HTTP_IF_MATCH='"2"'
    )
    assert response.json()["modbus"] == {"host": "10.0.0.7"}


@pytest.mark.parametrize(
    ("units", "field"),
    [
        ([{"host": "10.0.0.5"}, {"host": "10.0.0.6", "port": 70000}], "modbus.1.port"),
        ([{"host": "10.0.0.5"}, {"port": 502}], "modbus.1.host"),
        ([{"host": "10.0.0.5", "speed": 9600}], "modbus.0.speed"),
        ([{"host": "10.0.0.5"}, "10.0.0.6"], "modbus.1"),
        ([], "modbus"),
        ([{"host": f"10.0.0.{i}"} for i in range(17)], "modbus"),
    ],
)
def test_a_bad_modbus_unit_in_a_list_is_refused_naming_its_index(
    controller, staff_client, units, field
):
    for url in ("/v1/config/SITE001", "/v1/controllers/CTRL001/config"):
        response = staff_client.patch(url, {"modbus": units}, format="json", HTTP_IF_MATCH='"1"')
        assert response.status_code == 400, (url, response.json())
        assert field in response.json()["errors"], response.json()
    assert versions_of(controller) == [1]


def test_a_controller_with_assigned_assets_gets_the_limits_of_those_assets(
    controller, staff_client
):
    site = controller.site
    charger_gateway = ControllerFactory(site=site, code="CTRL002")
    charger_gateway.assets.set([site.equipment.get(code="CHG1")])
    controller.assets.set([site.equipment.get(code="BAT1").parent])
    mine = services.effective_config_for(controller)
    assert mine["version"] == 2
    assert set(mine["limits"]["battery"]["units"]) == {"BAT1", "BAT2"}
    assert mine["limits"]["chargers"] == {}
    theirs = services.effective_config_for(charger_gateway)
    assert theirs["limits"]["battery"]["units"] == {}
    assert theirs["limits"]["chargers"] == {"CHG1": {"max_power_kw": 300.0}}
    # Battery settings of the site do not trip the controller that has no battery.
    response = staff_client.patch(
        "/v1/config/SITE001",
        {"battery": {"max_charge_kw": 200}},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    assert response.status_code == 200, response.json()


@pytest.mark.django_db(transaction=True)
def test_concurrent_changes_never_share_a_version_number():
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite's in-memory test database does not take concurrent writers")
    site = SiteFactory(code="SITE050")
    controller = ControllerFactory(site=site, code="CTRL050")
    errors = []

    def change(value: int) -> None:
        try:
            for step in range(3):
                services.update_controller_config(
                    controller,
                    {"telemetry": {"interval_s": value + step}},
                    if_match=None,
                    by="test",
                )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(10 * n,)) for n in range(1, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    numbers = versions_of(controller)
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) == 10  # version 1 and nine changes
    assert services.current_version(controller.pk)[0] == 10


CALLERS = [
    "anonymous",
    "own_controller",
    "other_controller",
    "viewer",
    "operator",
    "foreign_operator",
    "staff",
]
# (method, path, expected status per caller in CALLERS order)
MATRIX = [
    ("get", "/v1/controllers/CTRL001/config", [401, 200, 404, 200, 200, 404, 200]),
    ("get", "/v1/controllers/CTRL001/config/version", [401, 200, 404, 200, 200, 404, 200]),
    ("get", "/v1/controllers/CTRL001/config/versions", [401, 200, 404, 200, 200, 404, 200]),
    ("get", "/v1/config/SITE001", [401, 200, 200, 200, 200, 404, 200]),
    ("patch", "/v1/controllers/CTRL001/config", [401, 403, 404, 403, 200, 404, 200]),
    ("patch", "/v1/config/SITE001", [401, 403, 403, 403, 200, 404, 200]),
    (
        "post",
        "/v1/controllers/CTRL001/config/versions/1/restore",
        [401, 403, 404, 403, 200, 404, 200],
    ),
]


@pytest.mark.parametrize(("method", "path", "expected"), MATRIX)
def test_access_to_configuration_follows_the_callers_scope(
    controller, other_site, method, path, expected
):
    site = controller.site
    neighbour = ControllerFactory(site=site, code="CTRL002")
    viewer, operator, foreign = (UserFactory(username=n) for n in ("v", "o", "f"))
    MembershipFactory(user=viewer, site=site, role="viewer")
    MembershipFactory(user=operator, site=site, role="operator")
    MembershipFactory(user=foreign, site=other_site, role="operator")
    clients = {
        "anonymous": APIClient(),
        "own_controller": controller_client(controller),
        "other_controller": controller_client(neighbour),
        "viewer": jwt_client(viewer),
        "operator": jwt_client(operator),
        "foreign_operator": jwt_client(foreign),
        "staff": jwt_client(UserFactory(username="s", is_staff=True)),
    }
    body = {"telemetry": {"interval_s": 7}} if method == "patch" else None
    for caller, status in zip(CALLERS, expected, strict=True):
        response = getattr(clients[caller], method)(path, body, format="json", HTTP_IF_MATCH="*")
        assert response.status_code == status, (caller, response.content)


def test_the_shared_firmware_channels_are_the_ones_a_release_may_have():
    from enexa.firmware.choices import Channel
    from shared.site_config import FIRMWARE_CHANNELS

    assert tuple(Channel.values) == FIRMWARE_CHANNELS
