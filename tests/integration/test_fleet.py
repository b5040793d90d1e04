"""Three sites on one Amperio backend, one broker and one Enexa, each over real sockets: every
site's telemetry stored, each command applied on its own ChargePost only, a stopped gateway
holding up no other site, and its outcomes delivered once it is back."""

import time

import pytest

from tests.integration.fleet import SILENT_AFTER_S, SITES, Fleet
from tests.integration.system import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with Fleet(tmp_path_factory.mktemp("fleet")) as fleet_:
        # Each test starts from a fleet whose every site reports to Enexa and to the backend.
        for site in SITES:
            wait_until(lambda s=site: fleet_.latest_reading(s), 60, 0.5, what=f"{site} reading")

        def all_reported():
            sites = fleet_.backend_health()["sites"]
            return all(sites[s]["last_report_age_s"] is not None for s in SITES)

        wait_until(all_reported, 30, 0.5, what="every gateway's report to the backend")
        yield fleet_


def grid_limits(fleet):
    return {
        site: sim.state.values()["site_grid_limit_kw"] for site, sim in fleet.simulators.items()
    }


def test_telemetry_from_every_site_is_stored_under_its_own_site(fleet):
    for site in SITES:
        reading = fleet.latest_reading(site)
        assert reading["site_id"] == site
        units = {unit["id"]: unit for unit in reading["battery"]["units"]}
        # The reading is this site's simulator's (each seeded differently), not another's.
        soc_now = fleet.simulators[site].state.values()["bat1_soc_pct"]
        assert abs(units["BAT1"]["soc_pct"] - soc_now) < 2.0, (site, units, soc_now)


def test_a_command_to_each_site_is_applied_on_its_own_chargepost_and_no_other(fleet):
    wanted = {site: 300.0 + 10 * n for n, site in enumerate(SITES, start=1)}
    ids = {
        site: fleet.dispatch(site, "set_grid_limit", {"limit_kw": kw})
        for site, kw in wanted.items()
    }
    for command_id in ids.values():
        result = fleet.wait_for_command(command_id, "applied", "rejected", "failed")
        assert result["status"] == "applied", (result, fleet.logs())
    assert grid_limits(fleet) == pytest.approx(wanted)


def test_a_gateway_cut_off_holds_up_no_other_site_and_gets_its_commands_when_back(fleet):
    down, *up = SITES
    fleet.gateways[down].kill()
    try:
        held = fleet.dispatch(down, "set_grid_limit", {"limit_kw": 355})
        applied = {
            site: fleet.dispatch(site, "set_grid_limit", {"limit_kw": 365 + n})
            for n, site in enumerate(up)
        }
        for command_id in applied.values():
            assert fleet.wait_for_command(command_id, "applied")["status"] == "applied"
        # The stopped site's command waits at the backend: delivered, with no outcome yet.
        assert fleet.command(held)["status"] == "queued"
        assert grid_limits(fleet)[down] != pytest.approx(355)
        # The backend says which gateway went silent; Enexa's poll of its health shows it.
        time.sleep(SILENT_AFTER_S + 1)
        health = fleet.backend_health()["sites"]
        assert health[down]["status"] == "degraded"
        assert health[down]["last_report_age_s"] > SILENT_AFTER_S
        # The others keep reporting (polled: on a loaded machine one report may come late).
        wait_until(
            lambda: all(
                fleet.backend_health()["sites"][site]["last_report_age_s"] < SILENT_AFTER_S
                for site in up
            ),
            30,
            0.5,
            what="the other gateways reporting",
        )
        fleet.run_manage("poll_gateway_health")
        gateway = fleet.enexa_api("GET", f"/v1/sites/{down}/status").json()["gateway"]
        assert gateway["status"] == "degraded"
        assert gateway["last_report_age_s"] > SILENT_AFTER_S
    finally:
        fleet.gateways[down].start()
    # Back: the queued command is applied on its own ChargePost and its outcome reaches Enexa.
    result = fleet.wait_for_command(held, "applied", "rejected", "failed", timeout_s=60)
    assert result["status"] == "applied", (result, fleet.logs())
    # The control cycle re-asserts the command's lease within a cycle, even if one that read
    # the table just before the command was applied wrote the configured limit after it.
    wait_until(lambda: grid_limits(fleet)[down] == pytest.approx(355), 15, 0.5, what="355 kW held")
    assert all(grid_limits(fleet)[site] != pytest.approx(355) for site in up)
