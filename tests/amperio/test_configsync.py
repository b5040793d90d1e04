"""Configuration sync: a cheap version poll, a fetch only on change, kept on disk."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from amperio.enexa_link.client import EnexaClient, EnexaUnavailable
from amperio.enexa_link.configsync import (
    ConfigInvalid,
    apply_config,
    load_config,
    sync_config,
    validate_config,
    with_defaults,
)
from amperio.gateway import Gateway
from amperio.settings import load
from amperio.state import GatewayState
from tests.httppeer import HttpPeer

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def config_v(version, interval_s=4, timeout_s=12):
    return {
        "version": version,
        "settings": {
            "modbus": {"host": "127.0.0.1", "port": 1502, "device_id": 1},
            "watchdog": {"interval_s": interval_s, "timeout_s": timeout_s},
            "telemetry": {"interval_s": 2, "batch_size": 50},
            "config_poll_interval_s": 10,
        },
        "limits": {"battery": {"max_charge_kw": 220, "max_discharge_kw": 220}},
    }


class FakeEnexa:
    """Enexa's config endpoints over real HTTP, with a version the test can bump."""

    def __init__(self, config):
        self.config = config

    def __call__(self, method, path, headers, body):
        version = self.config["version"]
        etag = f'"{version}"'
        if path.endswith("/config/version"):
            return 200, {"version": version, "updated_at": "2026-01-15T10:00:00Z"}
        if path.endswith("/config"):
            if headers.get("if-none-match") == etag:
                return 304, None, {"ETag": etag}
            return 200, self.config, {"ETag": etag}
        return 404, {"detail": "Not found."}


@pytest.fixture
def gateway(tmp_path, monkeypatch):
    monkeypatch.setenv("AMPERIO_CONTROLLER_ID", "CTRL001")
    settings = replace(load(), state_dir=tmp_path)
    return settings, GatewayState(settings.state_path)


def test_a_new_version_is_fetched_applied_and_kept_on_disk(gateway):
    settings, state = gateway
    enexa = FakeEnexa(config_v(3))
    with HttpPeer(enexa) as peer:
        result = sync_config(EnexaClient(peer.url, api_key="k"), settings, state, NOW)
    assert (result.outcome, result.version) == ("applied", 3)
    assert load_config(settings)["settings"]["watchdog"] == {"interval_s": 4, "timeout_s": 12}
    assert state.get("config_version") == 3


def test_an_unchanged_version_costs_only_the_version_poll(gateway):
    settings, state = gateway
    enexa = FakeEnexa(config_v(3))
    with HttpPeer(enexa) as peer:
        client = EnexaClient(peer.url, api_key="k")
        sync_config(client, settings, state, NOW)
        peer.requests.clear()
        assert sync_config(client, settings, state, NOW).outcome == "unchanged"
        enexa.config = config_v(4, interval_s=5, timeout_s=20)
        assert sync_config(client, settings, state, NOW).outcome == "applied"
    paths = [r["path"] for r in peer.requests]
    assert paths == [
        "/v1/controllers/CTRL001/config/version",
        "/v1/controllers/CTRL001/config/version",
        "/v1/controllers/CTRL001/config",
    ]
    assert load_config(settings)["settings"]["watchdog"]["timeout_s"] == 20


def test_a_restarted_gateway_runs_on_its_saved_config_while_enexa_is_down(gateway):
    settings, state = gateway
    apply_config(settings, state, config_v(7), NOW, etag='"7"')
    # A new process: nothing in memory, Enexa unreachable.
    dead = EnexaClient("http://127.0.0.1:9", max_retries=0)
    with pytest.raises(EnexaUnavailable):
        sync_config(dead, settings, state, NOW)
    config = load_config(settings)
    assert config["version"] == 7
    assert config["settings"]["modbus"]["port"] == 1502
    assert config["limits"]["battery"]["max_charge_kw"] == 220


def test_an_invalid_config_is_refused_and_the_applied_one_kept(gateway):
    settings, state = gateway
    apply_config(settings, state, config_v(3), NOW)
    with HttpPeer(FakeEnexa(config_v(4, interval_s=90, timeout_s=200))) as peer:
        result = sync_config(EnexaClient(peer.url, api_key="k"), settings, state, NOW)
    assert (result.outcome, result.version) == ("invalid", 3)
    assert load_config(settings)["version"] == 3
    assert "watchdog.interval_s" in state.get("config_error")["errors"]


def test_the_watchdog_must_beat_at_half_the_hardware_timeout_or_more_often():
    with pytest.raises(ConfigInvalid) as caught:
        validate_config(config_v(1, interval_s=10, timeout_s=15))
    assert "watchdog.timeout_s" in caught.value.errors
    with pytest.raises(ConfigInvalid):
        validate_config(config_v(1, interval_s=1, timeout_s=15))
    assert validate_config(config_v(1, interval_s=2, timeout_s=4))["version"] == 1


def test_a_gateway_never_configured_runs_on_defaults(gateway):
    settings, _ = gateway
    config = load_config(settings)
    assert config["version"] is None
    assert 2 <= config["settings"]["watchdog"]["interval_s"] <= 60


def test_the_gateway_sees_each_applied_config_and_a_spoiled_or_missing_file_as_defaults(
    gateway, caplog
):
    """The gateway keeps the parsed file between cycles, never past a change to it."""
    settings, state = gateway
    gw = Gateway(settings)
    assert gw.config()["version"] is None
    apply_config(settings, state, config_v(3), NOW)
    assert gw.config()["version"] == 3
    apply_config(settings, state, config_v(4), NOW)  # a file of the same size
    assert gw.config()["version"] == 4
    settings.config_path.write_text('{"version": 5, "sett')  # spoiled in place
    for _ in range(2):  # the defaults, and the error logged at every read, as ever
        caplog.clear()
        assert gw.config() == with_defaults({})
        assert "unreadable" in caplog.text
    apply_config(settings, state, config_v(6), NOW)
    assert gw.config()["version"] == 6
    settings.config_path.unlink()
    assert gw.config() == with_defaults({})


def test_syncing_the_config_leaves_the_outbox_alone(gateway):
    settings, state = gateway
    settings.outbox_path.write_bytes(b"buffered readings")
    with HttpPeer(FakeEnexa(config_v(3))) as peer:
        sync_config(EnexaClient(peer.url, api_key="k"), settings, state, NOW)
    assert settings.outbox_path.read_bytes() == b"buffered readings"


def test_a_tariff_and_keys_this_gateway_does_not_know_are_taken_and_left_alone():
    """The tariff is Enexa's (its optimizer reads it): a gateway takes a configuration with one,
    and with a section or key it does not know yet (a newer Enexa), without refusing the rest."""
    config = config_v(1, interval_s=10, timeout_s=30)
    config["settings"]["tariff"] = {"import_price": 0.25, "peak_from_hour": 17, "later_key": 1}
    config["settings"]["newer_section"] = {"anything": True}
    applied = validate_config(config)
    assert applied["settings"]["tariff"]["import_price"] == 0.25
    assert applied["settings"]["watchdog"]["timeout_s"] == 30
