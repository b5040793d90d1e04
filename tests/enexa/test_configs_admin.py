"""The admin of configuration and firmware: edits are validated and versioned, history and
drift are read-only, outdated controllers show up."""

import json

import pytest

from enexa.configs import services
from enexa.configs.models import ConfigVersion, SiteConfig
from enexa.firmware import services as firmware_services
from tests.factories import ControllerFactory, FirmwareReleaseFactory


@pytest.fixture
def controller(site):
    return ControllerFactory(site=site, code="CTRL001", firmware_version="2.0.0")


def test_every_configuration_and_firmware_admin_page_renders(admin_client, controller):
    services.update_site_config(
        controller.site, {"telemetry": {"interval_s": 9}}, if_match=None, by="test"
    )
    services.record_applied_version(controller.pk, 1)
    release = FirmwareReleaseFactory(version="2.1.0")
    firmware_services.record_report(controller, current_version="2.0.0", status="ok")
    pages = [
        "/admin/configs/siteconfig/",
        f"/admin/configs/siteconfig/{SiteConfig.objects.get().pk}/change/",
        "/admin/configs/siteconfig/add/",
        "/admin/configs/controllerconfig/",
        "/admin/configs/controllerconfig/add/",
        "/admin/configs/configstate/",
        "/admin/configs/configstate/?drift=yes",
        "/admin/configs/configversion/",
        f"/admin/configs/configversion/{ConfigVersion.objects.first().pk}/change/",
        "/admin/firmware/firmwarerelease/",
        f"/admin/firmware/firmwarerelease/{release.pk}/change/",
        "/admin/firmware/firmwarerelease/add/",
        "/admin/firmware/firmwarereport/",
        "/admin/firmware/controllerfirmware/",
        "/admin/firmware/controllerfirmware/?outdated=yes",
    ]
    for page in pages:
        assert admin_client.get(page).status_code == 200, page
    drift = admin_client.get("/admin/configs/configstate/?drift=yes")
    assert "CTRL001" in drift.content.decode()
    outdated = admin_client.get("/admin/firmware/controllerfirmware/?outdated=yes")
    assert "2.1.0" in outdated.content.decode()


def test_build_metadata_alone_does_not_make_firmware_outdated(admin_client, site):
    # 2.1.0+b1 and 2.1.0 are the same version (semver ignores build metadata): the admin's
    # "up to date" column and the outdated list agree on it.
    controller = ControllerFactory(site=site, code="CTRL002", firmware_version="2.1.0+b1")
    release = FirmwareReleaseFactory(version="2.1.0")
    assert firmware_services.latest_for(controller) == release
    assert firmware_services.is_outdated(controller, release) is False
    assert firmware_services.outdated_controllers() == []
    page = admin_client.get("/admin/firmware/controllerfirmware/").content.decode()
    assert 'alt="True"' in page and 'alt="False"' not in page  # the "up to date" column


@pytest.mark.parametrize(
    "page",
    [
        "/admin/firmware/controllerfirmware/",
        "/admin/firmware/controllerfirmware/?outdated=yes",
        "/admin/firmware/firmwarerelease/",
    ],
)
def test_the_firmware_lists_do_not_query_per_controller(
    admin_client, site, other_site, page, django_assert_max_num_queries
):
    FirmwareReleaseFactory(version="2.1.0")
    FirmwareReleaseFactory(version="2.2.0", target_sites=[site])
    FirmwareReleaseFactory(version="2.3.0-beta.1", channel="beta")
    for n in range(10):
        controller = ControllerFactory(site=(site, other_site)[n % 2], firmware_version="2.0.0")
        firmware_services.record_report(controller, current_version="2.0.0", status="ok")
    # About a dozen queries whatever the number of controllers (per row: 40 and more).
    with django_assert_max_num_queries(20):
        assert admin_client.get(page).status_code == 200


def test_a_site_setting_saved_in_the_admin_creates_a_version(admin_client, controller):
    response = admin_client.post(
        "/admin/configs/siteconfig/add/",
        {"site": controller.site.pk, "settings": json.dumps({"battery": {"reserve_pct": 40}})},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    config = services.effective_config_for(controller)
    assert config["version"] == 2
    assert config["settings"]["battery"]["reserve_pct"] == 40
    assert ConfigVersion.objects.get(controller=controller, number=2).created_by == "user:root"


def test_an_invalid_setting_in_the_admin_is_refused_without_a_version(admin_client, controller):
    response = admin_client.post(
        "/admin/configs/controllerconfig/add/",
        {"controller": controller.pk, "overrides": json.dumps({"watchdog": {"interval_s": 90}})},
    )
    assert response.status_code == 200
    assert "watchdog.interval_s" in response.content.decode()
    assert services.current_version(controller.pk)[0] == 1


def test_a_controller_override_saved_in_the_admin_creates_a_version(admin_client, controller):
    response = admin_client.post(
        "/admin/configs/controllerconfig/add/",
        {"controller": controller.pk, "overrides": json.dumps({"watchdog": {"interval_s": 5}})},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    config = services.effective_config_for(controller)
    assert config["version"] == 2
    assert config["settings"]["watchdog"]["interval_s"] == 5
    assert ConfigVersion.objects.get(controller=controller, number=2).created_by == "user:root"
