"""Enexa for real (gunicorn with two workers, its Celery worker): /metrics sums the workers'
counters through PROMETHEUS_MULTIPROC_DIR behind its bearer token, and a command's request id
is in the web log, in the worker's JSON log and on the call to Amperio; no secret is logged."""

import json
from datetime import UTC, datetime

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from amperio.procs import wait_until
from demo.enexa import LiveEnexa, enexa_database
from shared.fields import format_timestamp
from tests.httppeer import HttpPeer

pytestmark = pytest.mark.integration
METRICS_TOKEN = "enexa-metrics-token-for-the-test"


def accepted_readings(url) -> float:
    response = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "enexa_ingested_items_total" and sample.labels == {
                "kind": "telemetry",
                "outcome": "accepted",
            }:
                return sample.value
    raise AssertionError("enexa_ingested_items_total is missing")


def test_metrics_sum_the_workers_and_a_request_id_follows_its_command(tmp_path):
    def amperio(method, path, headers, body):
        return 202, {"command_id": body["command_id"], "status": "queued"}

    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {
        "ENEXA_AMPERIO_TOKEN": "svc-token-never-logged",
        "ENEXA_METRICS_TOKEN": METRICS_TOKEN,
        "ENEXA_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with HttpPeer(amperio) as peer, enexa_database(tmp_path) as database_url:
        enexa = LiveEnexa(database_url, tmp_path, {**env, "ENEXA_AMPERIO_URL": peer.url})
        try:
            assert requests.get(f"{enexa.url}/metrics", timeout=10).status_code == 401
            staff = {"Authorization": f"Bearer {enexa.staff_token()}"}
            # Six posts over a fresh connection each: both gunicorn workers take some.
            for n in range(6):
                reading = {
                    "site_id": "SITE001",
                    "timestamp": format_timestamp(datetime.now(UTC)),
                    "message_id": f"live-{n}",
                }
                posted = requests.post(
                    f"{enexa.url}/v1/telemetry",
                    json=reading,
                    headers={**staff, "Connection": "close"},
                    timeout=10,
                )
                assert posted.status_code == 201, posted.text
            for _ in range(4):  # whichever worker answers, it shows all six
                assert accepted_readings(enexa.url) == 6
            response = requests.post(
                f"{enexa.url}/v1/sites/SITE001/commands",
                json={"command": "set_mode", "params": {"mode": "auto"}},
                headers={**staff, "X-Request-ID": "live-trace-1"},
                timeout=10,
            )
            assert response.status_code == 202, response.text
            assert response.headers["X-Request-ID"] == "live-trace-1"
            wait_until(lambda: peer.requests, 60, what="the worker's POST to Amperio")
            assert peer.requests[0]["headers"]["x-request-id"] == "live-trace-1"
        finally:
            enexa.stop()
    worker_log = next(tmp_path.glob("enexa-worker-*.log")).read_text()
    lines = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    delivered = [line for line in lines if "accepted by Amperio" in line["message"]]
    assert delivered, worker_log[-3000:]
    assert {line["request_id"] for line in delivered} == {"live-trace-1"}
    for log in tmp_path.glob("enexa-*.log"):
        text = log.read_text()
        assert "svc-token-never-logged" not in text and METRICS_TOKEN not in text
