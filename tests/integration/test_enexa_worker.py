"""Enexa's worker for real: a dispatched command reaches Amperio from `celery -A enexa.celery
worker` on the embedded broker, and its delivery attempt is recorded."""

import json

import pytest
import requests

from amperio.procs import wait_until
from demo.enexa import LiveEnexa, enexa_database, run_manage
from tests.httppeer import HttpPeer

pytestmark = pytest.mark.integration


def test_a_dispatched_command_is_delivered_by_the_worker_and_its_attempt_recorded(tmp_path):
    def amperio(method, path, headers, body):
        if headers.get("authorization") != "Bearer svc-token":
            return 401, {"title": "Unauthorized"}
        if method == "POST":
            return 202, {"command_id": body["command_id"], "status": "queued"}
        return 200, {"command_id": path.rsplit("/", 1)[-1], "status": "queued"}

    with HttpPeer(amperio) as peer, enexa_database(tmp_path) as database_url:
        enexa = LiveEnexa(
            database_url,
            tmp_path,
            {"ENEXA_AMPERIO_URL": peer.url, "ENEXA_AMPERIO_TOKEN": "svc-token"},
        )
        try:
            response = requests.post(
                f"{enexa.url}/v1/sites/SITE001/commands",
                json={"command": "set_battery_power", "params": {"power_kw": -25}},
                headers={"Authorization": f"Bearer {enexa.staff_token()}"},
                timeout=10,
            )
            assert response.status_code == 202, response.text
            command_id = response.json()["command_id"]

            def posted():
                return [r for r in peer.requests if r["method"] == "POST"]

            wait_until(posted, 60, what="the worker's POST to Amperio")
            assert posted()[0]["body"]["command_id"] == command_id

            def recorded():
                out = run_manage(
                    "shell",
                    "-c",
                    "import json; from enexa.dispatch.models import DeliveryAttempt as A; "
                    "print(json.dumps(list(A.objects.values("
                    "'command__command_id', 'command__status', 'outcome', 'http_status'))))",
                    env=enexa.env,
                )
                rows = json.loads(out.strip().splitlines()[-1])
                return rows if rows and rows[0]["command__status"] == "queued" else None

            rows = wait_until(recorded, 30, 0.5, what="the delivery attempt")
            assert rows == [
                {
                    "command__command_id": command_id,
                    "command__status": "queued",
                    "outcome": "accepted",
                    "http_status": 202,
                }
            ]
        finally:
            enexa.stop()
