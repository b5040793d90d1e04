"""Settings from Enexa that the gateway used to accept and ignore: the status interval, a new
flush batch size without a restart, and the configured battery power caps."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from amperio import gateway
from amperio.dispatch import autonomy
from amperio.dispatch.errors import CommandError
from amperio.dispatch.store import CommandStore
from amperio.enexa_link.configsync import operating_limits, validate_config, write_config
from amperio.settings import load
from tests.amperio.limits import LIMITS
from tests.httppeer import HttpPeer

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def enexa():
    with HttpPeer(lambda method, path, headers, body: (200, {"site_id": "SITE001"})) as peer:
        yield peer


@pytest.fixture
def gw(tmp_path, enexa):
    settings = replace(
        load(), state_dir=tmp_path, key_file=tmp_path / "api_key", enexa_url=enexa.url
    )
    (tmp_path / "api_key").write_text("enx_test.key")
    return gateway.Gateway(settings)


def configure(gw, version=1, **settings):
    write_config(
        gw.settings.config_path, validate_config({"version": version, "settings": settings})
    )
    gw.state.set("config_version", version)


def status_posts(peer):
    return [r for r in peer.requests if r["path"] == "/v1/status"]


def test_the_status_report_goes_at_the_configured_interval_not_at_every_beat_tick(gw, enexa):
    configure(gw, status={"interval_s": 30})
    sent = [gateway.report_status(gw, T0 + timedelta(seconds=s)) for s in (0, 5, 10, 25, 30, 35)]
    assert sent == [True, None, None, None, True, None]
    assert len(status_posts(enexa)) == 2


def test_a_new_status_interval_holds_from_the_next_tick(gw, enexa):
    configure(gw, status={"interval_s": 3600})
    assert gateway.report_status(gw, T0) is True
    assert gateway.report_status(gw, T0 + timedelta(seconds=60)) is None
    configure(gw, version=2, status={"interval_s": 10})
    # The new version is reported at once; from then on every 10 s.
    assert gateway.report_status(gw, T0 + timedelta(seconds=65)) is True
    assert status_posts(enexa)[-1]["body"]["config_version"] == 2
    assert gateway.report_status(gw, T0 + timedelta(seconds=70)) is None
    assert gateway.report_status(gw, T0 + timedelta(seconds=75)) is True


def test_while_enexa_is_down_the_status_is_tried_at_the_interval_not_at_every_tick(tmp_path):
    settings = replace(
        load(),
        state_dir=tmp_path,
        key_file=tmp_path / "api_key",
        enexa_url="http://127.0.0.1:9",  # discard port: nothing listens
    )
    gw = gateway.Gateway(settings)
    configure(gw, status={"interval_s": 30})
    assert gateway.report_status(gw, T0) is False
    assert gw.state.get("enexa_reachable") is False
    assert gateway.report_status(gw, T0 + timedelta(seconds=5)) is None


def test_a_new_batch_size_applies_to_the_next_flush_without_a_restart(gw):
    configure(gw, telemetry={"interval_s": 5, "batch_size": 50})
    assert gw.flusher().batch_size == 50
    configure(gw, version=2, telemetry={"interval_s": 5, "batch_size": 200})
    assert gw.flusher().batch_size == 200


class Unit:
    """A ChargePost that takes every write."""

    def read(self, names):
        return {}

    def write_many(self, values, read_back=True):
        return dict(values)

    def write(self, name, value):
        return value


def test_a_dispatch_above_the_configured_battery_cap_is_refused_though_the_battery_could(
    tmp_path,
):
    store = CommandStore(tmp_path / "commands.sqlite3")
    config = validate_config(
        {"version": 1, "settings": {"battery": {"max_discharge_kw": 50}}, "limits": LIMITS}
    )
    command = {
        "site_id": "SITE001",
        "command": "set_battery_power",
        "params": {"power_kw": 80},
        "timestamp": "2026-01-15T10:00:00Z",
        "command_id": "cmd-cap",
    }
    store.submit(command, LIMITS, T0)  # arrived before the cap was configured
    record = store.execute("cmd-cap", Unit(), config, T0)
    assert record.status == "rejected"
    assert "discharge limit of 50 kW" in record.detail
    with pytest.raises(CommandError):  # and one arriving now is refused at once
        store.submit({**command, "command_id": "cmd-cap-2"}, operating_limits(config), T0)


def test_autonomy_never_asks_the_battery_for_more_than_the_configured_caps():
    snap = {"grid_import_kw": 200.0, "grid_export_kw": 0.0}
    for n in (1, 2):
        snap |= {
            f"bat{n}_soc_pct": 60.0,
            f"bat{n}_power_kw": 0.0,
            f"bat{n}_allowed_charge_kw": 110.0,
            f"bat{n}_allowed_discharge_kw": 110.0,
        }
    config = {"settings": {"grid": {"limit_kw": 100.0}, "battery": {"max_discharge_kw": 40.0}}}
    decision = autonomy.decide(T0, snap, config, None, None)
    assert decision.mode == "safe_local"
    assert decision.battery_power_kw == 40.0
