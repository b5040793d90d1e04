"""Enexa's /metrics (parsed with prometheus_client's own parser), its bearer token, the request
id that travels with a command to Amperio, and the JSON log format."""

import json
import logging
from datetime import UTC, datetime

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from enexa.dispatch import services as dispatch
from enexa.dispatch.models import Command
from shared.fields import format_timestamp
from shared.logs import JsonFormatter, RequestIdFilter, request_context
from tests.httppeer import HttpPeer


def scrape(client=None, **headers) -> dict:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.django_db
def test_metrics_count_accepted_duplicate_and_rejected_readings(equipped_site, staff_client):
    before = scrape()
    reading = {"site_id": "SITE001", "timestamp": format_timestamp(datetime.now(UTC))}
    bad = {"site_id": "SITE001", "timestamp": "yesterday"}
    staff_client.post("/v1/telemetry", {"items": [reading, reading, bad]}, format="json")
    after = scrape()
    for outcome, n in (("accepted", 1), ("duplicate", 1), ("rejected", 1)):
        key = ("enexa_ingested_items_total", {"kind": "telemetry", "outcome": outcome})
        assert value(after, key[0], **key[1]) - value(before, key[0], **key[1]) == n
    requests_before = value(before, "enexa_ingest_seconds_count", kind="telemetry")
    assert value(after, "enexa_ingest_seconds_count", kind="telemetry") == requests_before + 1


@pytest.mark.django_db
def test_metrics_read_the_delivery_queue_and_command_outcomes_from_the_database(site):
    now = datetime.now(UTC)
    for i, status in enumerate(["undelivered", "undelivered", "applied", "failed"]):
        Command.objects.create(
            command_id=f"c{i}",
            site=site,
            command="set_mode",
            params={"mode": "auto"},
            issued_at=now,
            status=status,
            created_by="test",
            delivery_attempts=3 if i == 0 else 1,
        )
    samples = scrape()
    assert value(samples, "enexa_metrics_database_up") == 1
    assert value(samples, "enexa_delivery_queue_depth") == 2
    assert value(samples, "enexa_commands", status="applied") == 1
    assert value(samples, "enexa_commands", status="failed") == 1
    assert value(samples, "enexa_commands", status="expired") == 0
    assert value(samples, "enexa_delivery_retries_total") == 2
    # Defined for the webhooks and optimizer work, present before they count anything.
    assert ("enexa_solver_seconds_count", ()) in samples


@pytest.mark.django_db
@override_settings(ENEXA_METRICS_TOKEN="s3cret-metrics")
def test_metrics_need_the_bearer_token_when_one_is_configured():
    assert Client().get("/metrics").status_code == 401
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"].startswith("Bearer")
    samples = scrape(HTTP_AUTHORIZATION="Bearer s3cret-metrics")
    assert ("enexa_metrics_database_up", ()) in samples


def test_every_response_carries_a_request_id_the_callers_when_plausible(db):
    given = Client().get("/v1/health", HTTP_X_REQUEST_ID="trace-42.a")
    assert given["X-Request-ID"] == "trace-42.a"
    forged = Client().get("/v1/health", HTTP_X_REQUEST_ID="x\n2026 CRITICAL forged line")
    assert forged["X-Request-ID"] != "x\n2026 CRITICAL forged line"
    assert len(forged["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_a_commands_request_id_goes_with_its_delivery_to_amperio_and_into_the_logs(
    site, operator_client, enqueued, settings, caplog
):
    def amperio(method, path, headers, body):
        logging.getLogger("amperio.standin").info("got %s", body["command_id"])
        return 202, {"command_id": body["command_id"], "status": "queued"}

    caplog.handler.addFilter(RequestIdFilter())
    with HttpPeer(amperio) as peer:
        settings.ENEXA_AMPERIO_URL = peer.url
        settings.ENEXA_AMPERIO_TOKEN = "svc-token"
        with enqueued.committing(execute=True):
            response = operator_client.post(
                "/v1/sites/SITE001/commands",
                {"command": "set_mode", "params": {"mode": "auto"}},
                format="json",
                HTTP_X_REQUEST_ID="req-for-one-command",
            )
        assert response.status_code == 202, response.json()
        command = Command.objects.get()
        assert command.request_id == "req-for-one-command"
        with caplog.at_level(logging.INFO):
            enqueued.run_all()  # the worker's delivery, later, outside the request
        # Redelivery (beat: no request around it) sends the same id.
        Command.objects.filter(pk=command.pk).update(status="undelivered")
        with caplog.at_level(logging.INFO):
            dispatch.deliver(Command.objects.select_related("site").get(pk=command.pk))
    first, again = peer.requests
    for call in (first, again):
        assert call["headers"]["x-request-id"] == "req-for-one-command"
        assert call["headers"]["authorization"] == "Bearer svc-token"
    delivery_logs = [r for r in caplog.records if r.name.startswith("enexa.dispatch")]
    assert delivery_logs, "the delivery logged nothing"
    assert {r.request_id for r in delivery_logs} == {"req-for-one-command"}
    assert not any("svc-token" in r.getMessage() for r in caplog.records)


def test_json_logs_are_one_object_per_line_with_the_request_id_and_no_secret_added():
    record = logging.LogRecord("enexa.x", logging.INFO, __file__, 1, "dispatch %s", ("c1",), None)
    with request_context("req-7"):
        RequestIdFilter().filter(record)
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "dispatch c1"
    assert entry["request_id"] == "req-7"
    assert entry["level"] == "INFO" and entry["logger"] == "enexa.x"
    assert "\n" not in line
