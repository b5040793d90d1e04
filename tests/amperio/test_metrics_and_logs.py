"""Amperio's /metrics (parsed with prometheus_client's parser): what the worker and the
watchdog count reaches the API process; and one command's request id in the API's JSON log
and in the gateway worker's task log, with no secret in either."""

import json
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from amperio import gateway
from amperio.api.services import metrics_text
from amperio.metrics import MetricCounters, record_modbus_read
from amperio.procs import Proc, wait_until
from tests.amperio.limits import LIMITS
from tests.amperio.test_amperio_api import NEW_TOKEN, AmperioApi, dispatch


def parse(text: str) -> dict:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_reads_beats_and_the_outbox_show_in_the_apis_metrics(gw, sims):
    for _ in range(2):
        gateway.run_control_cycle(gw, datetime.now(UTC))
    gateway.watchdog_beat(gw, datetime.now(UTC))
    # What the API process shows: read from the shared files, not from this Gateway object.
    samples = parse(metrics_text(gw.settings).decode())
    for chargepost in ("1", "2"):
        assert value(samples, "amperio_modbus_read_seconds_count", chargepost=chargepost) == 2
        assert (
            value(samples, "amperio_modbus_read_seconds_bucket", chargepost=chargepost, le="+Inf")
            == 2
        )
        assert (value(samples, "amperio_modbus_read_errors_total", chargepost=chargepost) or 0) == 0
    assert value(samples, "amperio_watchdog_beats_total", outcome="written") == 1
    assert value(samples, "amperio_outbox_depth", kind="readings") == 2
    assert value(samples, "amperio_outbox_oldest_age_seconds") >= 0
    assert value(samples, "amperio_modbus_link_up") == 1
    # One ChargePost away: its reads count as errors, the other's do not.
    sims[1].stop()
    gateway.run_control_cycle(gw, datetime.now(UTC))
    samples = parse(metrics_text(gw.settings).decode())
    assert value(samples, "amperio_modbus_read_errors_total", chargepost="2") == 1
    assert (value(samples, "amperio_modbus_read_errors_total", chargepost="1") or 0) == 0
    assert value(samples, "amperio_modbus_link_up") == 0


def test_a_histogram_observation_lands_in_every_bucket_at_or_above_it(tmp_path):
    counters = MetricCounters(tmp_path / "metrics.sqlite3")
    record_modbus_read(counters, 1, 0.03, ok=True)
    record_modbus_read(counters, 1, 0.3, ok=True)
    stored = {(n, labels.get("le")): v for n, labels, v in counters.values()}
    assert ("amperio_modbus_read_seconds_bucket", "0.025") not in stored
    assert stored[("amperio_modbus_read_seconds_bucket", "0.05")] == 1
    assert stored[("amperio_modbus_read_seconds_bucket", "0.5")] == 2
    assert stored[("amperio_modbus_read_seconds_sum", None)] == pytest.approx(0.33)


def json_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.mark.integration
def test_metrics_and_a_commands_request_id_through_the_api_and_the_gateways_task(tmp_path, sim):
    metrics_token = "metrics-" + uuid.uuid4().hex
    env = {
        "AMPERIO_METRICS_TOKEN": metrics_token,
        "AMPERIO_LOG_FORMAT": "json",
        "AMPERIO_MODBUS_PORT": str(sim.port),
    }
    api = AmperioApi(tmp_path, extra_env=env, workers=2)
    worker = None
    try:
        # As the site worker counts, in its own process: the API's workers all see it.
        record_modbus_read(MetricCounters(api.state_dir / "metrics.sqlite3"), 1, 0.02, ok=True)
        assert requests.get(f"{api.url}/metrics", timeout=5).status_code == 401
        for _ in range(3):  # whichever gunicorn worker answers
            scraped = requests.get(
                f"{api.url}/metrics",
                headers={"Authorization": f"Bearer {metrics_token}"},
                timeout=5,
            )
            assert scraped.status_code == 200
            samples = parse(scraped.text)
            assert value(samples, "amperio_modbus_read_seconds_count", chargepost="1") == 1
        body = dispatch("cmd-traced", params={"power_kw": -10})
        response = api.post(body, **{"X-Request-ID": "trace-one-command"})
        assert response.status_code == 202, response.text
        assert response.headers["X-Request-ID"] == "trace-one-command"
        worker = Proc(
            "amperio-worker",
            [sys.executable, "-m", "amperio", "worker", "--pool", "solo"],
            tmp_path,
            api.env,
        )
        wait_until(
            lambda: api.status("cmd-traced").json()["status"] != "queued", 60, what="the task"
        )
    finally:
        if worker is not None:
            worker.stop()
        api.stop()
    api_lines = json_lines(tmp_path / "amperio-api.log")
    traced = [line for line in api_lines if line["request_id"] == "trace-one-command"]
    assert any("cmd-traced" in line["message"] for line in traced), api_lines[-5:]
    worker_log = (tmp_path / "amperio-worker.log").read_text()
    task_lines = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    ran = [line for line in task_lines if "cmd-traced" in line["message"]]
    assert ran and all(line["request_id"] == "trace-one-command" for line in ran), worker_log[
        -2000:
    ]
    for log in (tmp_path / "amperio-api.log", tmp_path / "amperio-worker.log"):
        text = log.read_text()
        assert NEW_TOKEN not in text and metrics_token not in text


def test_the_fleet_backends_metrics_show_each_site_as_reported_and_its_commands(tmp_path):
    from amperio.api.services import backend_store
    from amperio.settings import load

    settings = replace(
        load(),
        state_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path}/backend.sqlite3",
        sites=("SITEB",),
    )
    store = backend_store(settings)
    now = datetime.now(UTC)
    health = {
        "status": "ok",
        "site": {
            "buffer": {"depth": 7},
            "modbus": {"link_up": True},
            "watchdog": {"beating": True},
        },
    }
    store.record_report("SITEA", now, LIMITS, health)
    for n, status in enumerate(["queued", "applied", "applied"]):
        store.add_command(f"c{n}", "SITEA", {}, "fp", status, "", now)
    samples = parse(metrics_text(settings, now).decode())
    assert value(samples, "amperio_site_ok", site="SITEA") == 1
    assert value(samples, "amperio_site_outbox_depth", site="SITEA") == 7
    assert value(samples, "amperio_site_report_age_seconds", site="SITEA") == 0
    assert value(samples, "amperio_backend_commands", site="SITEA", status="applied") == 2
    # Configured but never heard from: not ok, and no made-up figures.
    assert value(samples, "amperio_site_ok", site="SITEB") == 0
    assert value(samples, "amperio_site_outbox_depth", site="SITEB") is None
