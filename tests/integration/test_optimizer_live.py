"""The optimizer with both sides running for real (Enexa with its worker, the simulator at a
speed-up, the gateway): a plan dispatched and followed by the ChargePost, its measured cost at
most the no-battery baseline, a forced SOC drift re-planned, an outage ending with a
`reconnect` plan. The figures are reported at the end of the run."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.fields import format_timestamp
from tests.integration.system import FAST, SITE, System, set_site_config, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

DEAR, CHEAP, EXPORT = 0.40, 0.05, 0.02


def prices_dear_now_cheap_later() -> dict:
    """The current hour (and the one before) dear, the next day cheap: the plan discharges now
    and recharges later."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    slots = []
    for h in range(-1, 26):
        start = hour + timedelta(hours=h)
        slots.append(
            {
                "start": format_timestamp(start),
                "end": format_timestamp(start + timedelta(hours=1)),
                "import_price": DEAR if h <= 0 else CHEAP,
                "export_price": EXPORT,
            }
        )
    return {"currency": "EUR", "slots": slots}


def newest_plan(system: System) -> dict:
    plans = system.enexa_api("GET", f"/v1/sites/{SITE}/plans", params={"limit": 1}).json()
    return plans["plans"][0]


def plan_for(system: System, reason: str, after_version: int) -> dict | None:
    plan = newest_plan(system)
    return plan if plan["reason"] == reason and plan["version"] > after_version else None


def measured_costs(system: System, since: str) -> tuple[float, float, int]:
    """(cost, no-battery baseline, readings) of the readings since `since` at the dear price:
    the grid as measured, against the same load bought from the grid without the battery."""
    body = system.enexa_api(
        "GET",
        f"/v1/sites/{SITE}/telemetry",
        params={"from": since, "to": "2100-01-01T00:00:00Z"},
    ).json()
    cost = baseline = 0.0
    for point in body["points"]:
        grid_in = point["grid"]["import_kw"] or 0.0
        grid_out = point["grid"]["export_kw"] or 0.0
        load = grid_in - grid_out + (point["battery"]["power_kw"] or 0.0)
        cost += grid_in * DEAR - grid_out * EXPORT
        baseline += max(load, 0.0) * DEAR - max(-load, 0.0) * EXPORT
    return cost, baseline, len(body["points"])


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    sys_ = System(
        tmp_path_factory.mktemp("optimizer"),
        enexa_env={"ENEXA_OFFLINE_AFTER_S": "6"},
        speed=5.0,
    )
    sys_.before_provisioning = lambda: set_site_config(sys_, FAST)
    with sys_:
        wait_until(sys_.latest_reading, 60, 0.5, what="first reading in Enexa")
        yield sys_


def test_a_plan_is_followed_re_planned_on_drift_and_after_an_outage(system, figures):
    started = time.monotonic()
    put = system.enexa_api("PUT", f"/v1/sites/{SITE}/prices", json=prices_dear_now_cheap_later())
    assert put.status_code == 200, put.text

    # A plan, dispatched: the gateway applies the schedule and the units follow its slot.
    response = system.enexa_api("POST", f"/v1/sites/{SITE}/plans", json={"horizon_h": 24})
    assert response.status_code == 201, response.text
    plan = response.json()
    assert plan["reason"] == "manual" and plan["command_id"]
    first_kw = plan["slots"][0]["battery_power_kw"]
    assert first_kw > 1.0, plan["slots"][:4]  # the dear hour: the battery covers the load
    system.wait_for_command(plan["command_id"], "applied", timeout_s=90, interval_s=0.5)

    def following() -> bool:
        values = system.simulator_values()
        setpoint = values["bat1_power_setpoint_kw"] + values["bat2_power_setpoint_kw"]
        return abs(setpoint - first_kw) <= 1.0

    wait_until(following, 60, 0.5, what="the units following the plan's slot")
    followed_at = format_timestamp(datetime.now(UTC))
    time.sleep(6)  # a few readings at the planned power
    cost, baseline, readings = measured_costs(system, followed_at)
    figures.update(
        {
            "plan_solve_ms": plan["solve_ms"],
            "first_slot_kw": first_kw,
            "measured_cost": round(cost, 2),
            "baseline": round(baseline, 2),
            "readings": readings,
        }
    )
    assert readings >= 3
    assert cost <= baseline + 1e-6
    actual = system.enexa_api("GET", f"/v1/sites/{SITE}/plan/actual").json()
    assert actual["plan_id"] == plan["id"]
    assert actual["slots"][0]["measured_battery_power_kw"] is not None

    # A forced SOC drift: the units lose 30 points; the drift check re-plans from the reading.
    with system.simulator.state.lock:
        for unit in system.simulator.state.batteries:
            unit.soc_pct = max(0.0, unit.soc_pct - 30.0)
    low_soc = system.simulator_values()["bat1_soc_pct"]
    wait_until(
        lambda: (
            (system.latest_reading() or {}).get("battery", {}).get("soc_pct", 100) < low_soc + 5
        ),
        30,
        0.5,
        what="the low SOC in Enexa",
    )
    checked = system.run_manage("check_soc_drift")
    assert json.loads(checked.strip().splitlines()[-1]) == [SITE], checked
    drifted = wait_until(
        lambda: plan_for(system, "soc_drift", plan["version"]), 60, 0.5, what="a soc_drift plan"
    )
    figures["soc_drift_plan_start_soc"] = drifted["slots"][0]["soc_pct"]
    system.wait_for_command(drifted["command_id"], "applied", timeout_s=90, interval_s=0.5)

    # An outage: both links cut until Enexa marks the site offline; back, it is re-planned.
    system.enexa_link.cut()
    system.amperio_link.cut()
    try:
        time.sleep(8)  # longer than ENEXA_OFFLINE_AFTER_S
        system.run_manage("detect_offline")
        assert system.enexa_api("GET", f"/v1/sites/{SITE}/status").json()["online"] is False
    finally:
        system.enexa_link.restore()
        system.amperio_link.restore()
    reconnected = wait_until(
        lambda: plan_for(system, "reconnect", drifted["version"]),
        120,
        0.5,
        what="a reconnect plan",
    )
    system.wait_for_command(reconnected["command_id"], "applied", timeout_s=90, interval_s=0.5)
    outage = system.enexa_api("GET", f"/v1/sites/{SITE}/outages").json()["outages"][0]
    assert outage["commands"]["replanned"]["plan"] == reconnected["id"], outage
    figures["wall_s"] = round(time.monotonic() - started, 1)
