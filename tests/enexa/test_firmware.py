"""The firmware catalogue: which release a controller gets, reports, rollouts and outdated
controllers."""

import pytest

from enexa.configs import services as config_services
from enexa.firmware import semver, services
from enexa.firmware.models import FirmwareRelease, FirmwareReport
from tests.conftest import controller_client
from tests.factories import ControllerFactory, FirmwareReleaseFactory

SHA = "ab" * 32


@pytest.fixture
def controller(site):
    return ControllerFactory(site=site, code="CTRL001", firmware_version="2.0.5")


def latest(client, **params):
    return client.get("/v1/firmware/latest", params)


def test_versions_order_semantically_not_as_text():
    ordered = [
        "1.9.9",
        "2.0.0-alpha",
        "2.0.0-alpha.1",
        "2.0.0-beta.2",
        "2.0.0-beta.11",
        "2.0.0-rc.1",
        "2.0.0",
        "2.9.0",
        "2.10.0",
    ]
    assert sorted(ordered, key=semver.Version) == ordered
    assert semver.Version("2.1.0+build.7") == semver.Version("2.1.0")
    assert semver.parse("2.1") is None and semver.parse("v2.1.0") is None


def test_the_latest_release_is_the_newest_by_semantic_version(controller, staff_client):
    for version in ("2.9.0", "2.10.0", "2.2.0"):
        FirmwareReleaseFactory(version=version)
    response = latest(staff_client, controller="CTRL001")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == "2.10.0"
    assert {"url", "sha256", "size_bytes"} <= set(body)
    assert latest(controller_client(controller)).json()["version"] == "2.10.0"


def test_unpublished_yanked_and_other_model_releases_are_never_offered(controller, staff_client):
    FirmwareReleaseFactory(version="2.1.0")
    FirmwareReleaseFactory(version="2.3.0", published=False)
    FirmwareReleaseFactory(version="2.4.0", yanked=True)
    FirmwareReleaseFactory(version="9.0.0", controller_model="Other-GW")
    assert latest(staff_client, controller="CTRL001").json()["version"] == "2.1.0"
    assert latest(staff_client, model="Other-GW").json()["version"] == "9.0.0"


def test_beta_releases_reach_only_controllers_on_the_beta_channel(controller, staff_client):
    FirmwareReleaseFactory(version="2.1.0")
    FirmwareReleaseFactory(version="2.2.0-beta.1", channel="beta")
    assert latest(staff_client, controller="CTRL001").json()["version"] == "2.1.0"
    config_services.update_controller_config(
        controller, {"firmware": {"channel": "beta"}}, if_match=None, by="test"
    )
    assert latest(staff_client, controller="CTRL001").json()["version"] == "2.2.0-beta.1"
    assert latest(staff_client, model="Amperio-GW", channel="beta").json()["version"] == (
        "2.2.0-beta.1"
    )


def test_a_targeted_release_reaches_only_its_sites_until_it_goes_to_all(
    controller, other_site, staff_client
):
    elsewhere = ControllerFactory(site=other_site, code="CTRL900", firmware_version="2.0.5")
    FirmwareReleaseFactory(version="2.1.0")
    FirmwareReleaseFactory(version="2.2.0", target_sites=[controller.site])
    assert latest(staff_client, controller="CTRL001").json()["version"] == "2.2.0"
    assert latest(staff_client, controller=elsewhere.code).json()["version"] == "2.1.0"
    assert latest(staff_client, model="Amperio-GW").json()["version"] == "2.1.0"
    response = staff_client.patch("/v1/firmware/2.2.0", {"target_sites": []}, format="json")
    assert response.status_code == 200, response.json()
    assert latest(staff_client, controller=elsewhere.code).json()["version"] == "2.2.0"


def test_a_release_older_than_what_a_controller_runs_is_never_offered(controller, staff_client):
    FirmwareReleaseFactory(version="2.0.1")
    response = latest(staff_client, controller="CTRL001")  # it runs 2.0.5
    assert response.status_code == 404
    assert services.latest_for(controller) is None
    FirmwareReleaseFactory(version="2.0.5")
    assert latest(staff_client, controller="CTRL001").json()["version"] == "2.0.5"


def test_staff_register_and_publish_releases_and_a_duplicate_is_a_conflict(staff_client, site):
    body = {
        "version": "2.1.0",
        "controller_model": "Amperio-GW",
        "url": "https://downloads.example.com/amperio-2.1.0.bin",
        "sha256": SHA,
        "size_bytes": 1024,
        "notes": "Faster watchdog.",
        "target_sites": ["SITE001"],
    }
    created = staff_client.post("/v1/firmware", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["published"] is False
    assert created.json()["target_sites"] == ["SITE001"]
    assert staff_client.post("/v1/firmware", body, format="json").status_code == 409
    bad = staff_client.post(
        "/v1/firmware", {**body, "version": "2.1", "sha256": "xyz"}, format="json"
    )
    assert bad.status_code == 400
    assert {"version", "sha256"} <= set(bad.json()["errors"])
    published = staff_client.patch("/v1/firmware/2.1.0", {"published": True}, format="json")
    assert published.json()["published"] is True
    fixed = staff_client.patch("/v1/firmware/2.1.0", {"sha256": "cd" * 32}, format="json")
    assert fixed.json()["sha256"] == SHA  # the image of a release never changes
    listing = staff_client.get("/v1/firmware")
    assert [r["version"] for r in listing.json()["releases"]] == ["2.1.0"]


def test_only_staff_manage_the_catalogue(operator_client, controller):
    FirmwareReleaseFactory(version="2.1.0")
    assert operator_client.get("/v1/firmware").status_code == 403
    assert operator_client.post("/v1/firmware", {}, format="json").status_code == 403
    assert controller_client(controller).get("/v1/firmware/2.1.0/rollout").status_code == 403
    assert operator_client.get("/v1/firmware/latest?controller=CTRL001").status_code == 200


def test_a_report_is_stored_and_updates_the_version_the_controller_runs(controller):
    client = controller_client(controller)
    downloading = {
        "current_version": "2.0.5",
        "status": "downloading",
        "target_version": "2.1.0",
        "message_id": "fw-1",
    }
    response = client.post("/v1/controllers/CTRL001/firmware", downloading, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "downloading"
    replay = client.post("/v1/controllers/CTRL001/firmware", downloading, format="json")
    assert replay.status_code == 200
    client.post(
        "/v1/controllers/CTRL001/firmware",
        {"current_version": "2.1.0", "status": "ok"},
        format="json",
    )
    controller.refresh_from_db()
    assert controller.firmware_version == "2.1.0"
    history = client.get("/v1/controllers/CTRL001/firmware").json()["reports"]
    assert [r["status"] for r in history] == ["ok", "downloading"]
    assert FirmwareReport.objects.count() == 2


def test_a_failed_report_needs_its_error_and_versions_must_be_semantic(controller):
    client = controller_client(controller)
    no_error = client.post(
        "/v1/controllers/CTRL001/firmware",
        {"current_version": "2.0.5", "status": "failed"},
        format="json",
    )
    assert no_error.status_code == 400 and "error" in no_error.json()["errors"]
    bad = client.post(
        "/v1/controllers/CTRL001/firmware",
        {"current_version": "two", "status": "ok"},
        format="json",
    )
    assert bad.status_code == 400 and "current_version" in bad.json()["errors"]


def test_a_reported_version_must_fit_the_controllers_firmware_version(controller):
    # Semantic and within the report's own 64 characters, but the version a controller runs
    # is stored in Controller.firmware_version (40): a 400, not a database error.
    client = controller_client(controller)
    too_long = client.post(
        "/v1/controllers/CTRL001/firmware",
        {"current_version": "2.1.0+" + "b" * 35, "status": "ok"},
        format="json",
    )
    assert too_long.status_code == 400 and "current_version" in too_long.json()["errors"]
    assert FirmwareReport.objects.count() == 0
    longest = "2.1.0+" + "b" * 34
    fits = client.post(
        "/v1/controllers/CTRL001/firmware",
        {"current_version": longest, "status": "ok"},
        format="json",
    )
    assert fits.status_code == 201, fits.json()
    controller.refresh_from_db()
    assert controller.firmware_version == longest


def test_a_controller_reports_only_for_itself(controller, site):
    ControllerFactory(site=site, code="CTRL002")
    response = controller_client(controller).post(
        "/v1/controllers/CTRL002/firmware",
        {"current_version": "2.0.5", "status": "ok"},
        format="json",
    )
    assert response.status_code == 404


def test_an_update_succeeds_only_when_the_new_version_runs_after_the_restart(
    controller, site, staff_client
):
    release = FirmwareReleaseFactory(version="2.1.0")
    came_back_old = ControllerFactory(site=site, code="CTRL002", firmware_version="2.0.5")
    broken = ControllerFactory(site=site, code="CTRL003", firmware_version="2.0.5")
    ControllerFactory(site=site, code="CTRL004", firmware_version="2.0.5")
    services.record_report(
        controller, current_version="2.0.5", status="installing", target_version="2.1.0"
    )
    services.record_report(controller, current_version="2.1.0", status="ok")
    # "done" before the reboot, still on the old version: not a success.
    report, _ = services.record_report(
        came_back_old, current_version="2.0.5", status="ok", target_version="2.1.0"
    )
    assert services.update_succeeded(report, release) is False
    services.record_report(
        broken,
        current_version="2.0.5",
        status="failed",
        target_version="2.1.0",
        error="sha256 mismatch",
    )
    rollout = staff_client.get("/v1/firmware/2.1.0/rollout")
    assert rollout.status_code == 200
    body = rollout.json()
    states = {row["id"]: row["state"] for row in body["controllers"]}
    assert states == {
        "CTRL001": "succeeded",
        "CTRL002": "pending",
        "CTRL003": "failed",
        "CTRL004": "pending",
    }
    assert body["counts"]["succeeded"] == 1 and body["counts"]["failed"] == 1
    assert next(r for r in body["controllers"] if r["id"] == "CTRL003")["error"] == (
        "sha256 mismatch"
    )


def test_staff_and_operators_see_which_controllers_run_outdated_firmware(
    controller, other_site, staff_client, operator_client
):
    ControllerFactory(site=other_site, code="CTRL900", firmware_version="2.0.0")
    ControllerFactory(site=controller.site, code="CTRL002", firmware_version="2.1.0")
    FirmwareReleaseFactory(version="2.1.0")
    rows = staff_client.get("/v1/firmware/outdated").json()["controllers"]
    assert {r["id"]: r["latest_version"] for r in rows} == {"CTRL001": "2.1.0", "CTRL900": "2.1.0"}
    mine = operator_client.get("/v1/firmware/outdated").json()["controllers"]
    assert [r["id"] for r in mine] == ["CTRL001"]


def test_the_outdated_list_offers_each_controller_what_latest_for_offers_it(controller, other_site):
    # One pass over several controllers: channels, sites and models differ between them.
    beta = ControllerFactory(site=controller.site, code="CTRL002", firmware_version="2.0.5")
    config_services.update_controller_config(
        beta, {"firmware": {"channel": "beta"}}, if_match=None, by="test"
    )
    elsewhere = ControllerFactory(site=other_site, code="CTRL900", firmware_version="2.0.5")
    other_model = ControllerFactory(
        site=other_site, code="CTRL901", model="Other-GW", firmware_version="1.0.0"
    )
    FirmwareReleaseFactory(version="2.1.0")
    FirmwareReleaseFactory(version="2.2.0", target_sites=[controller.site])
    FirmwareReleaseFactory(version="2.4.0-beta.1", channel="beta")
    FirmwareReleaseFactory(version="2.5.0-beta.1", channel="beta", target_sites=[other_site])
    FirmwareReleaseFactory(version="1.1.0", controller_model="Other-GW")
    rows = {r["id"]: r["latest_version"] for r in services.outdated_controllers()}
    assert rows == {
        "CTRL001": "2.2.0",
        "CTRL002": "2.4.0-beta.1",
        "CTRL900": "2.1.0",
        "CTRL901": "1.1.0",
    }
    each = (controller, beta, elsewhere, other_model)
    assert rows == {c.code: services.latest_for(c).version for c in each}


def test_a_version_shared_by_two_models_needs_the_model_to_be_named(staff_client, db):
    FirmwareReleaseFactory(version="3.0.0")
    FirmwareReleaseFactory(version="3.0.0", controller_model="Other-GW")
    assert staff_client.get("/v1/firmware/3.0.0").status_code == 400
    one = staff_client.get("/v1/firmware/3.0.0?model=Other-GW")
    assert one.json()["controller_model"] == "Other-GW"
    assert FirmwareRelease.objects.count() == 2


FIRMWARE_MATRIX = [
    # caller order: anonymous, own controller, other site's controller, operator, staff
    ("get", "/v1/firmware/latest?controller=CTRL001", [401, 200, 404, 200, 200]),
    ("get", "/v1/controllers/CTRL001/firmware", [401, 200, 404, 200, 200]),
    ("post", "/v1/controllers/CTRL001/firmware", [401, 201, 404, 403, 201]),
    ("get", "/v1/firmware", [401, 403, 403, 403, 200]),
    ("get", "/v1/firmware/2.1.0/rollout", [401, 403, 403, 403, 200]),
    ("get", "/v1/firmware/outdated", [401, 403, 403, 200, 200]),
]


@pytest.mark.parametrize(("method", "path", "expected"), FIRMWARE_MATRIX)
def test_access_to_firmware_follows_the_callers_scope(
    controller, other_site, operator_client, staff_client, method, path, expected
):
    from rest_framework.test import APIClient

    FirmwareReleaseFactory(version="2.1.0")
    foreign = ControllerFactory(site=other_site, code="CTRL900")
    clients = [
        APIClient(),
        controller_client(controller),
        controller_client(foreign),
        operator_client,
        staff_client,
    ]
    body = {"current_version": "2.0.5", "status": "ok"} if method == "post" else None
    for client, status in zip(clients, expected, strict=True):
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == status, (path, response.content)
