"""`command`, `firmware` and `log` events: each is queued in the gateway's real outbox by the
code path where it happens, ready for `POST /v1/events` like any buffered event."""

import hashlib
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from amperio import gateway, watchdog
from amperio.api import services as api_services
from amperio.dispatch.errors import CommandError
from amperio.enexa_link import status
from amperio.enexa_link.client import EnexaClient
from amperio.enexa_link.configsync import validate_config, write_config
from amperio.enexa_link.firmware import check_and_update
from amperio.modbus.errors import ModbusError
from amperio.settings import load
from amperio.telemetry import events
from amperio.telemetry.outbox import Outbox
from shared.events import Event
from tests.amperio.limits import LIMITS
from tests.httppeer import HttpPeer

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def gw(tmp_path):
    settings = replace(load(), state_dir=tmp_path, key_file=tmp_path / "api_key")
    gw = gateway.Gateway(settings)
    write_config(settings.config_path, validate_config({"version": 1, "limits": LIMITS}))
    return gw


def queued_events(box, kind=None):
    """The events waiting in the outbox (each valid for Enexa), oldest first."""
    items = box.next_batch("event", 1000)
    box.release([item.key for item in items])
    found = [Event.from_dict(item.payload).to_dict() for item in items]
    return [e for e in found if kind is None or e["kind"] == kind]


def command(command_id, power_kw=-25.0, **extra):
    return {
        "site_id": "SITE001",
        "command": "set_battery_power",
        "params": {"power_kw": power_kw},
        "timestamp": "2026-01-15T10:00:00Z",
        "command_id": command_id,
        **extra,
    }


class Unit:
    """A ChargePost taking every write, or failing each once `broken`."""

    broken = False

    def read(self, names):
        return {}

    def write_many(self, values, read_back=True):
        if self.broken:
            raise ModbusError("link down")
        return dict(values)

    def write(self, name, value):
        return value


def outcomes(box):
    return [(e["data"]["command_id"], e["data"]["status"]) for e in queued_events(box, "command")]


def test_each_command_outcome_the_table_records_is_a_command_event(gw):
    store, unit = gw.commands(), Unit()
    config = gw.config()
    store.submit(command("c-applied"), LIMITS, T0)
    store.execute("c-applied", unit, config, T0)
    with pytest.raises(CommandError):
        store.submit(command("c-rejected", power_kw=500.0), LIMITS, T0)
    store.submit(command("c-expired", valid_until="2026-01-15T10:00:05Z"), LIMITS, T0)
    store.execute("c-expired", unit, config, T0 + timedelta(seconds=10))
    store.submit(command("c-failed"), LIMITS, T0)
    unit.broken = True
    store.execute("c-failed", unit, config, T0)
    store.submit(command("c-lost", valid_until="2026-01-15T10:00:20Z"), LIMITS, T0)
    store.recover_lost(T0 + timedelta(minutes=5), config=config)

    assert outcomes(gw.outbox()) == [
        ("c-applied", "applied"),
        ("c-rejected", "rejected"),
        ("c-expired", "expired"),
        ("c-failed", "failed"),
        ("c-lost", "expired"),
    ]
    applied, rejected = queued_events(gw.outbox(), "command")[:2]
    assert applied["severity"] == "info"
    assert applied["data"]["registers"]["bat1_power_setpoint_kw"] == -12.5
    assert rejected["severity"] == "warning"
    assert "discharge limit" in rejected["message"]


def test_a_replayed_command_is_not_a_second_outcome(gw):
    store = gw.commands()
    store.submit(command("c-1"), LIMITS, T0)
    store.execute("c-1", Unit(), gw.config(), T0)
    store.submit(command("c-1"), LIMITS, T0)
    store.execute("c-1", Unit(), gw.config(), T0)
    assert outcomes(gw.outbox()) == [("c-1", "applied")]


def test_a_command_the_api_refuses_on_arrival_is_a_command_event(gw, monkeypatch):
    monkeypatch.setattr(gateway, "_gateways", {})
    with pytest.raises(CommandError):
        api_services.accept_command(gw.settings, command("c-api", power_kw=500.0))
    assert outcomes(Outbox(gw.settings.outbox_path)) == [("c-api", "rejected")]


IMAGE = {"image": "gateway 2.1.0"}


def update_firmware(gw, sha256):
    """Run an update to 2.1.0 offered with `sha256`; the (step, status) events queued."""

    def handler(method, path, headers, body):
        if path.startswith("/v1/firmware/latest"):
            return 200, {"version": "2.1.0", "url": "/files/fw.bin", "sha256": sha256}
        if path == "/files/fw.bin":
            return 200, IMAGE
        return 201, body

    with HttpPeer(handler) as peer:
        client = EnexaClient(peer.url, api_key="key", max_retries=0)
        step = events.firmware_steps(gw.outbox, "SITE001")
        check_and_update(client, "CTRL001", "2.0.5", gw.state, step=step)
    return [
        (e["data"]["step"], e["data"]["status"]) for e in queued_events(gw.outbox(), "firmware")
    ]


def test_each_firmware_step_is_a_firmware_event(gw):
    good = hashlib.sha256(json.dumps(IMAGE).encode()).hexdigest()
    assert update_firmware(gw, good) == [
        ("download", "started"),
        ("download", "ok"),
        ("verify", "ok"),
        ("install", "started"),
        ("result", "ok"),
    ]
    result = queued_events(gw.outbox(), "firmware")[-1]
    assert result["data"]["running"] == "2.1.0"


def test_a_firmware_image_failing_verification_is_a_failed_verify_and_result(gw):
    assert update_firmware(gw, "0" * 64) == [
        ("download", "started"),
        ("download", "ok"),
        ("verify", "failed"),
        ("result", "failed"),
    ]
    failed = queued_events(gw.outbox(), "firmware")[-1]
    assert failed["severity"] == "warning"
    assert "sha256 mismatch" in failed["data"]["error"]


@pytest.fixture
def outage_log(gw):
    handler = events.install_outage_log(gw.state, gw.outbox, "SITE001")
    try:
        yield handler
    finally:
        logging.getLogger("amperio").removeHandler(handler)


def test_the_gateways_warnings_during_an_outage_are_kept_as_log_events(gw, outage_log):
    status.note_enexa_unreachable(gw.state, T0, "connection refused")
    # The watchdog withholds its beat (no control cycle yet) and says so in the log.
    watchdog.beat(Unit(), gw.state, gw.config(), T0)
    logging.getLogger("amperio.telemetry.collector").info("an info line is not kept")

    kept = queued_events(gw.outbox(), "log")
    assert [e["message"] for e in kept] == ["Watchdog heartbeat withheld: no control cycle yet"]
    assert kept[0]["severity"] == "warning"
    assert kept[0]["data"]["logger"] == "amperio.watchdog"
    assert kept[0]["data"]["outage_since"] == gw.state.get("enexa_unreachable_since")


def test_while_enexa_answers_the_log_stays_local(gw, outage_log):
    status.note_enexa_reachable(gw.state, T0)
    logging.getLogger("amperio.watchdog").warning("a warning while Enexa answers")
    assert queued_events(gw.outbox(), "log") == []


def test_a_warning_every_cycle_is_kept_once_per_outage(gw, outage_log):
    status.note_enexa_unreachable(gw.state, T0, "connection refused")
    for attempt in range(10):
        logging.getLogger("amperio.enexa_link.client").warning("POST failed (attempt %s)", attempt)
    assert [e["message"] for e in queued_events(gw.outbox(), "log")] == ["POST failed (attempt 0)"]
    # The next outage keeps it again.
    status.note_enexa_reachable(gw.state, T0 + timedelta(minutes=1))
    status.note_enexa_unreachable(gw.state, T0 + timedelta(minutes=2), "timeout")
    logging.getLogger("amperio.enexa_link.client").warning("POST failed (attempt %s)", 1)
    assert len(queued_events(gw.outbox(), "log")) == 2


def test_a_long_outage_keeps_a_bounded_number_of_log_lines(gw, outage_log):
    outage_log.max_lines = 3
    status.note_enexa_unreachable(gw.state, T0, "connection refused")
    for n in range(10):
        logging.getLogger("amperio.telemetry.flusher").warning(f"distinct line {n}")
    messages = [e["message"] for e in queued_events(gw.outbox(), "log")]
    assert messages[:3] == ["distinct line 0", "distinct line 1", "distinct line 2"]
    assert len(messages) == 4 and "not kept" in messages[3]


def test_the_process_gateway_installs_one_outage_log(monkeypatch, tmp_path):
    monkeypatch.setenv("AMPERIO_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(gateway, "_gateway", None)
    # Settings as this environment says, not as cached by an earlier test: else the gateway's
    # state would be the repository's var/amperio, shared by parallel test workers.
    monkeypatch.setattr(gateway, "get_settings", load)
    logger = logging.getLogger("amperio")
    before = list(logger.handlers)
    try:
        gateway.get_gateway()
        monkeypatch.setattr(gateway, "_gateway", None)
        second = gateway.get_gateway()
        mine = [h for h in logger.handlers if isinstance(h, events.OutageLog)]
        assert len(mine) == 1 and mine[0].state is second.state
        assert second.settings.state_dir == tmp_path
    finally:
        logger.handlers = before
