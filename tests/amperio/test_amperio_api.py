"""Amperio's API served by gunicorn for real: dispatch, status, health, tokens, schema."""

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from amperio.dispatch.store import CommandStore
from amperio.procs import Proc, free_port, wait_until
from amperio.simulator.server import ChargePostSimulator
from amperio.state import GatewayState
from shared.fields import format_timestamp
from tests.amperio.limits import LIMITS
from tests.lifetimes import stopped_at_end

# Every test here talks to a gunicorn the module starts.
pytestmark = pytest.mark.integration
OLD_TOKEN, NEW_TOKEN = "svc-old-" + uuid.uuid4().hex, "svc-new-" + uuid.uuid4().hex


class AmperioApi:
    """gunicorn serving amperio.api on a free port, with its own state directory."""

    def __init__(self, tmp_path, extra_env=None, workers=2):
        self.state_dir = tmp_path / "amperio"
        self.state_dir.mkdir()
        (self.state_dir / "config.json").write_text(
            json.dumps({"version": 3, "settings": {"setpoint_validity_s": 300}, "limits": LIMITS})
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "AMPERIO_STATE_DIR": str(self.state_dir),
            "AMPERIO_SITE_ID": "SITE001",
            "AMPERIO_SERVICE_TOKENS": f"{OLD_TOKEN},{NEW_TOKEN}",
            # On a shared Redis broker (CI's CELERY_BROKER_URL), its queues are its own: a
            # worker of another test consuming SITE001's queue must not take its tasks.
            "AMPERIO_BROKER_KEY_PREFIX": f"api-test-{uuid.uuid4().hex[:12]}:",
            **(extra_env or {}),
        }
        self.procs = [
            Proc(
                "amperio-api",
                [sys.executable, "-m", "amperio", "api", "--bind", f"127.0.0.1:{self.port}"]
                + ["--workers", str(workers)],
                tmp_path,
                self.env,
            )
        ]
        wait_until(
            lambda: requests.get(f"{self.url}/v1/health", timeout=1).ok, 30, what="Amperio API"
        )

    def post(self, body, token=NEW_TOKEN, **headers):
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(f"{self.url}/v1/dispatch", json=body, headers=headers, timeout=10)

    def status(self, command_id, token=NEW_TOKEN):
        return requests.get(
            f"{self.url}/v1/dispatch/{command_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    # One server for the module (a gunicorn start costs seconds); tests use their own ids.
    yield from stopped_at_end(AmperioApi(tmp_path_factory.mktemp("api")))


def dispatch(command_id=None, params=None, **extra):
    now = datetime.now(UTC)
    return {
        "site_id": "SITE001",
        "command": "set_battery_power",
        "params": {"power_kw": -25} if params is None else params,
        "timestamp": format_timestamp(now),
        "command_id": command_id or uuid.uuid4().hex,
        "valid_until": format_timestamp(now + timedelta(minutes=5)),
        **extra,
    }


def test_a_dispatch_is_accepted_as_queued_and_its_status_can_be_asked(api):
    body = dispatch("cmd-accepted")
    response = api.post(body)
    assert response.status_code == 202
    assert response.json() == {"command_id": "cmd-accepted", "status": "queued"}
    status = api.status("cmd-accepted").json()
    assert status["status"] == "queued"
    assert status["params"] == {"power_kw": -25.0}


def test_replaying_a_dispatch_returns_the_first_result_and_stores_it_once(api):
    body = dispatch("cmd-twice")
    assert api.post(body).status_code == 202
    again = api.post(body)
    assert again.status_code == 200
    assert again.json()["command_id"] == "cmd-twice"
    assert again.json()["received_at"] == api.status("cmd-twice").json()["received_at"]


def test_a_reused_command_id_with_another_payload_is_refused_with_422(api):
    assert api.post(dispatch("cmd-reused")).status_code == 202
    response = api.post(dispatch("cmd-reused", params={"power_kw": 40}))
    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert api.status("cmd-reused").json()["params"] == {"power_kw": -25.0}


def test_a_setpoint_beyond_the_limits_is_refused_with_the_limit_in_the_message(api):
    response = api.post(dispatch("cmd-too-much", params={"power_kw": 500}))
    assert response.status_code == 400
    problem = response.json()
    assert "220 kW" in problem["detail"]
    assert "params.power_kw" in problem["errors"]
    assert api.status("cmd-too-much").json()["status"] == "rejected"


def test_malformed_input_gets_problem_details_with_field_errors(api):
    response = api.post({"site_id": "SITE001", "command": "set_battery_power", "params": {}})
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "timestamp" in errors and "params.power_kw" in errors


def test_a_command_for_another_site_is_404_unknown_site_and_stored_nowhere(api):
    response = api.post(dispatch("cmd-other-site", site_id="SITE999"))
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/unknown_site")
    assert "SITE999" in response.json()["detail"]
    assert api.status("cmd-other-site").status_code == 404


def post_raw(api, text):
    return requests.post(
        f"{api.url}/v1/dispatch",
        data=text.encode(),
        headers={"Authorization": f"Bearer {NEW_TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )


def test_json_nested_a_thousand_levels_deep_is_a_400_problem_not_a_500(api):
    for text in ("[" * 1000 + "]" * 1000, '{"params":' * 1000 + "1" + "}" * 1000):
        response = post_raw(api, text)
        assert response.status_code == 400
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert "nested deeper" in response.json()["detail"]


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
    ids=["year-0", "year-10000"],
)
def test_a_timestamp_that_leaves_the_calendar_in_utc_is_a_field_error(api, moment):
    as_timestamp = dispatch(f"cmd-calendar-t-{moment[:4]}", timestamp=moment)
    del as_timestamp["valid_until"]
    as_schedule = dispatch(
        f"cmd-calendar-s-{moment[:4]}",
        command="apply_schedule",
        params={"slots": [{"start": moment, "end": "9999-12-31T23:00:00Z", "power_kw": 10}]},
    )
    cases = [
        (as_timestamp, "timestamp"),
        (dispatch(f"cmd-calendar-v-{moment[:4]}", valid_until=moment), "valid_until"),
        (as_schedule, "params.slots.0.start"),
    ]
    for body, field in cases:
        response = api.post(body)
        assert response.status_code == 400, response.text
        assert field in response.json()["errors"]
        assert api.status(body["command_id"]).status_code == 404  # nothing stored


@pytest.mark.parametrize("field", ["command_id", "site_id"])
def test_a_lone_surrogate_in_a_string_is_a_field_error(api, field):
    body = dispatch("cmd-surrogate-" + field)
    text = json.dumps({**body, field: "PLACEHOLDER"}).replace("PLACEHOLDER", "A\\ud800")
    response = post_raw(api, text)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert api.status("cmd-surrogate-" + field).status_code == 404


def test_the_idempotency_key_header_stands_in_for_a_missing_command_id(api):
    body = dispatch()
    del body["command_id"]
    response = api.post(body, **{"Idempotency-Key": "key-123"})
    assert response.status_code == 202
    assert response.json()["command_id"] == "key-123"


def test_a_dispatch_without_any_id_as_in_the_seed_gets_one(api):
    body = dispatch()
    del body["command_id"]
    response = api.post(body)
    assert response.status_code == 202
    assert api.status(response.json()["command_id"]).json()["status"] == "queued"


def test_without_a_valid_service_token_the_api_answers_401(api):
    body = dispatch("cmd-auth")
    assert api.post(body, token=None).status_code == 401
    refused = api.post(body, token="not-a-token")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.status("cmd-auth", token="not-a-token").status_code == 401
    assert api.status("cmd-auth").status_code == 404  # nothing was stored


def test_both_the_old_and_the_rotated_token_are_accepted(api):
    assert api.post(dispatch("cmd-old"), token=OLD_TOKEN).status_code == 202
    assert api.post(dispatch("cmd-new"), token=NEW_TOKEN).status_code == 202
    assert api.status("cmd-old", token=NEW_TOKEN).json()["status"] == "queued"


def test_an_unknown_command_id_is_404(api):
    response = api.status("nope")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_health_reports_each_site_and_enexa(api):
    now = datetime.now(UTC)
    GatewayState(api.state_dir / "state.sqlite3").update(
        {
            "modbus_link_up": True,
            "modbus_last_read_at": format_timestamp(now),
            "watchdog_last_beat_at": format_timestamp(now),
            "enexa_reachable": True,
            "enexa_last_ok_at": format_timestamp(now),
            "mode": "auto",
        }
    )
    health = requests.get(f"{api.url}/v1/health", timeout=10).json()
    assert health["status"] == "ok"
    site = health["sites"]["SITE001"]
    assert site["modbus"] == {"link_up": True, "last_read_at": format_timestamp(now)}
    assert site["watchdog"]["last_beat_at"] == format_timestamp(now)
    # No readings; the `command` events of commands refused on arrival by earlier tests wait.
    assert site["buffer"]["readings"] == 0
    assert site["buffer"]["depth"] == site["buffer"]["events"]
    assert site["mode"] == "auto"
    assert health["enexa"] == {"reachable": True, "last_ok_at": format_timestamp(now)}
    GatewayState(api.state_dir / "state.sqlite3").set("modbus_link_up", False)
    assert requests.get(f"{api.url}/v1/health", timeout=10).json()["status"] == "degraded"


def test_health_is_degraded_while_a_command_is_stuck_and_counts_the_failed_ones(api):
    now = datetime.now(UTC)
    GatewayState(api.state_dir / "state.sqlite3").update(
        {
            "modbus_link_up": True,
            "watchdog_last_beat_at": format_timestamp(now),
            "enexa_reachable": True,
        }
    )
    store = CommandStore(api.state_dir / "commands.sqlite3")
    # queued ten minutes ago and never finished: recovery has been failing on it
    store.submit(dispatch("cmd-stuck"), LIMITS, now - timedelta(minutes=10))
    health = requests.get(f"{api.url}/v1/health", timeout=10).json()
    assert health["status"] == "degraded"
    assert health["sites"]["SITE001"]["commands"]["stuck"] == 1
    # it finally runs, without a configuration to check it against
    assert store.execute("cmd-stuck", client=None, config={}).status == "failed"
    health = requests.get(f"{api.url}/v1/health", timeout=10).json()
    assert health["status"] == "ok"
    commands = health["sites"]["SITE001"]["commands"]
    assert commands["stuck"] == 0 and commands["failed"] >= 1
    assert commands["last_failure"]["command_id"] == "cmd-stuck"
    assert "limits unknown" in api.status("cmd-stuck").json()["detail"]
    store.close()


def test_the_openapi_schema_and_docs_are_served(api):
    schema = requests.get(f"{api.url}/v1/schema/", timeout=10)
    assert schema.status_code == 200
    assert "/v1/dispatch/{command_id}" in schema.text
    assert requests.get(f"{api.url}/v1/docs/", timeout=10).status_code == 200


def test_health_answers_with_or_without_a_trailing_slash_and_the_schema_names_one(api):
    with_slash = requests.get(f"{api.url}/v1/health/", timeout=10)
    assert with_slash.status_code == 200
    assert (
        with_slash.json()["sites"]
        == requests.get(f"{api.url}/v1/health", timeout=10).json()["sites"]
    )
    paths = requests.get(f"{api.url}/v1/schema/?format=json", timeout=10).json()["paths"]
    assert "/v1/health" in paths
    assert "/v1/health/" not in paths


@pytest.mark.parametrize("page", ["docs", "redoc", "schema"])
def test_the_docs_pages_typed_without_their_slash_redirect_to_it(api, page):
    response = requests.get(f"{api.url}/v1/{page}", timeout=10)
    assert response.status_code == 200
    assert response.url == f"{api.url}/v1/{page}/"


def test_a_dispatch_reaches_the_simulator_through_a_worker_and_is_applied_once(tmp_path):
    sim = ChargePostSimulator(port=0, speed=0).start()
    sim.state.watchdog_timeout_s = 100_000
    api = None
    try:
        api = AmperioApi(tmp_path, {"AMPERIO_MODBUS_PORT": str(sim.port)})
        api.procs.append(
            Proc(
                "amperio-worker",
                [sys.executable, "-m", "amperio", "worker", "--pool", "solo"],
                tmp_path,
                api.env,
            )
        )
        body = dispatch("cmd-e2e", params={"power_kw": 30})
        assert api.post(body).status_code == 202
        assert api.post(body).status_code == 200
        record = wait_until(
            lambda: (r := api.status("cmd-e2e").json())["status"] != "queued" and r,
            60,
            what="command applied",
        )
        assert record["status"] == "applied", record
        assert record["registers"]["bat1_power_setpoint_kw"] == 15.0
        with sim.state.lock:
            assert [b.setpoint_kw for b in sim.state.batteries] == [15.0, 15.0]
    finally:
        if api:
            api.stop()
        sim.stop()
