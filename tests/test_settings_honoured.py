"""Every setting Enexa accepts changes what the gateway does (or what Enexa decides for it, as
the firmware it offers and the schedule the optimizer plans); a setting nothing reads is refused.

The keys come from the one definition of the site configuration (`shared.site_config.RULES`),
so a setting added there without a check here, or without the gateway reading it, fails this
test. Each check runs the code that reads the setting with two values and shows the behaviour
differs."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from amperio import watchdog
from amperio.celery import beat_schedule
from amperio.chargeposts import endpoints
from amperio.dispatch import autonomy, limits
from amperio.dispatch.errors import CommandError
from amperio.enexa_link import status
from amperio.enexa_link.configsync import validate_config, write_config
from amperio.gateway import Gateway
from amperio.settings import Settings, load
from amperio.state import GatewayState
from enexa.configs.services import update_controller_config, update_site_config
from enexa.firmware.services import latest_for
from shared.fields import format_timestamp
from shared.site_config import RULES
from shared.site_config import validate as validate_document
from tests.factories import BatteryUnitFactory, ControllerFactory, FirmwareReleaseFactory

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
UNIT = {
    "max_charge_kw": 110.0,
    "max_discharge_kw": 110.0,
    "capacity_kwh": 140.0,
    "soc_min_pct": 5.0,
    "soc_max_pct": 95.0,
}
LIMITS = {
    "battery": {**UNIT, "max_charge_kw": 220.0, "max_discharge_kw": 220.0, "capacity_kwh": 280.0}
    | {"units": {"BAT1": UNIT, "BAT2": UNIT}},
    "chargers": {},
    "grid": {"limit_kw": 100.0},
}


def setting_paths() -> list[str]:
    """Every key Enexa accepts, as `section.field` (or `key` for a top-level scalar)."""
    return [
        f"{key}.{name}" if isinstance(rule, dict) else key
        for key, rule in RULES.items()
        for name in (rule if isinstance(rule, dict) else [None])
    ]


def gateway_config(path: str, value: Any, base: dict[str, Any]) -> dict[str, Any]:
    """The gateway's applied configuration with `base` settings and `path` set to `value`
    (checked as the gateway checks a configuration from Enexa)."""
    settings = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = settings
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return validate_config({"version": 1, "settings": settings, "limits": LIMITS})


def snapshot(import_kw: float, soc: tuple[float, float]) -> dict[str, Any]:
    """A ChargePost snapshot: the grid import with the battery idle, and each unit's SOC."""
    snap: dict[str, Any] = {"grid_import_kw": import_kw, "grid_export_kw": 0.0}
    for n, level in enumerate(soc, start=1):
        snap |= {
            f"bat{n}_soc_pct": level,
            f"bat{n}_power_kw": 0.0,
            f"bat{n}_allowed_charge_kw": 110.0,
            f"bat{n}_allowed_discharge_kw": 110.0,
        }
    return snap


def autonomy_with(snap: dict[str, Any], schedule=None, enexa_last_ok_at=None):
    """What the autonomous mode decides (Enexa away since `enexa_last_ok_at`) from `snap`."""

    def run(ctx: Any, config: dict[str, Any]) -> Any:
        decision = autonomy.decide(NOW, snap, config, schedule, enexa_last_ok_at)
        return decision.mode, decision.battery_power_kw, decision.unit_power_kw

    return run


NEEDS_DISCHARGE = snapshot(import_kw=150.0, soc=(30.0, 50.0))  # 55 kW over the 95 kW target
HAS_HEADROOM = snapshot(import_kw=20.0, soc=(30.0, 60.0))  # 75 kW of room to charge
RESERVE_ABOVE_SOC = {"battery": {"reserve_pct": 65.0}}  # so autonomy charges from the headroom


def beat_interval(entry: str):
    def run(ctx: Any, config: dict[str, Any]) -> Any:
        return beat_schedule(config, ctx.settings)[entry]["schedule"]

    return run


def chargepost_address(ctx: Any, config: dict[str, Any]) -> Any:
    return endpoints(ctx.settings, config)


class FakeChargePost:
    """Records register writes; reads answer nothing set."""

    def __init__(self) -> None:
        self.writes: dict[str, Any] = {}

    def read(self, names: list[str]) -> dict[str, Any]:
        return {}

    def write(self, name: str, value: Any) -> Any:
        self.writes[name] = value
        return value


def hardware_watchdog_timeout(ctx: Any, config: dict[str, Any]) -> Any:
    ctx.state.update({"control_cycle_ok_at": format_timestamp(NOW), "modbus_link_up": True})
    unit = FakeChargePost()
    watchdog.beat(unit, ctx.state, config, NOW)
    return unit.writes["watchdog_timeout_s"]


def flush_batch_size(ctx: Any, config: dict[str, Any]) -> Any:
    write_config(ctx.settings.config_path, config)
    return ctx.gateway.flusher().batch_size


def status_report_due(ctx: Any, config: dict[str, Any]) -> Any:
    """Whether the beat tick 20 s after the last report sends one."""
    ctx.state.update(
        {
            "status_sent_at": format_timestamp(NOW - timedelta(seconds=20)),
            "status_sent_config_version": None,
            "config_version": None,
        }
    )
    return status.status_due(ctx.state, config, NOW)


def grid_limit_written(ctx: Any, config: dict[str, Any]) -> Any:
    return limits.configured_grid_limit_kw(config)


def lease_length(ctx: Any, config: dict[str, Any]) -> Any:
    return limits.setpoint_validity_s(config)


def dispatch_refusal(ctx: Any, config: dict[str, Any]) -> Any:
    """Whether a 150 kW discharge command is refused against the gateway's limits."""
    from amperio.enexa_link.configsync import operating_limits
    from shared.dispatch import DispatchCommand

    cmd = DispatchCommand.from_dict(
        {
            "site_id": "SITE001",
            "command": "set_battery_power",
            "params": {"power_kw": 150.0},
            "timestamp": format_timestamp(NOW),
            "command_id": "c-1",
        }
    )
    try:
        limits.check_limits(cmd, operating_limits(config))
    except CommandError as exc:
        return exc.detail
    return None


def offered_firmware(ctx: Any, config: dict[str, Any]) -> Any:
    """Read by Enexa on the gateway's behalf: which release `GET /v1/firmware/latest` offers
    the controller, so which firmware the gateway installs."""
    controller = ctx.controller
    update_controller_config(
        controller, {"firmware": config["settings"]["firmware"]}, if_match=None, by="test"
    )
    release = latest_for(controller)
    return release.version if release else None


def planned_price(hour_utc: int):
    """Read by Enexa's optimizer on the gateway's behalf: the import and export price it plans
    the slot at `hour_utc` with, where no prices were put (the site is in Europe/Berlin)."""

    def run(ctx: Any, config: dict[str, Any]) -> Any:
        from enexa.optimizer.services import slot_prices

        site = ctx.controller.site
        at = NOW.replace(hour=hour_utc)
        buys, sells, _ = slot_prices(site, [at], 60, config["settings"]["tariff"])
        return buys, sells

    return run


def planned_demand_charge(ctx: Any, config: dict[str, Any]) -> Any:
    """The demand charge of the problem the optimizer solves for the site."""
    from enexa.optimizer.services import build_problem

    site = ctx.controller.site
    BatteryUnitFactory(site=site)
    update_site_config(site, {"tariff": config["settings"]["tariff"]}, if_match=None, by="test")
    problem, _, _ = build_problem(site, horizon_h=1, slot_minutes=60, now=NOW)
    return problem.demand_charge_per_kw


TARIFF = {"import_price": 0.20, "export_price": 0.05}
# The evening band, 17-21 local: 16-20 UTC in January.
PEAK = {**TARIFF, "peak_from_hour": 17, "peak_to_hour": 21}
IN_PEAK_UTC, OFF_PEAK_UTC = 17, 8

# path -> (value, other value, base settings, what the gateway does with it)
CHECKS: dict[str, tuple[Any, Any, dict[str, Any], Any]] = {
    "modbus.host": ("10.0.0.5", "10.0.0.6", {}, chargepost_address),
    "modbus.port": (502, 1502, {"modbus": {"host": "10.0.0.5"}}, chargepost_address),
    "modbus.device_id": (1, 7, {"modbus": {"host": "10.0.0.5"}}, chargepost_address),
    "watchdog.interval_s": (2, 10, {"watchdog": {"timeout_s": 30}}, beat_interval("watchdog-beat")),
    "watchdog.timeout_s": (30, 60, {}, hardware_watchdog_timeout),
    "telemetry.interval_s": (1, 5, {}, beat_interval("control-cycle")),
    "telemetry.batch_size": (10, 500, {}, flush_batch_size),
    "status.interval_s": (10, 30, {}, status_report_due),
    "config_poll_interval_s": (30, 300, {}, beat_interval("sync-config")),
    "battery.soc_min_pct": (20.0, 40.0, {}, autonomy_with(NEEDS_DISCHARGE)),
    "battery.soc_max_pct": (
        70.0,
        90.0,
        RESERVE_ABOVE_SOC,
        autonomy_with(HAS_HEADROOM),
    ),
    "battery.reserve_pct": (40.0, 50.0, {}, autonomy_with(HAS_HEADROOM)),
    "battery.max_charge_kw": (
        10.0,
        100.0,
        RESERVE_ABOVE_SOC,
        autonomy_with(HAS_HEADROOM),
    ),
    "battery.max_discharge_kw": (100.0, 200.0, {}, dispatch_refusal),
    "grid.limit_kw": (80.0, 100.0, {}, grid_limit_written),
    "autonomy.enter_after_s": (
        60,
        300,
        {},
        autonomy_with(NEEDS_DISCHARGE, enexa_last_ok_at=NOW - timedelta(seconds=120)),
    ),
    "autonomy.mode": (
        "follow_schedule_then_safe",
        "safe",
        {},
        autonomy_with(
            NEEDS_DISCHARGE,
            schedule=[
                {
                    "start": NOW - timedelta(minutes=5),
                    "end": NOW + timedelta(minutes=5),
                    "power_kw": 60.0,
                }
            ],
        ),
    ),
    "autonomy.margin_kw": (2.0, 10.0, {}, autonomy_with(NEEDS_DISCHARGE)),
    "setpoint_validity_s": (60, 900, {}, lease_length),
    "firmware.channel": ("stable", "beta", {}, offered_firmware),
    "tariff.import_price": (0.20, 0.30, {"tariff": TARIFF}, planned_price(OFF_PEAK_UTC)),
    "tariff.export_price": (0.05, 0.08, {"tariff": TARIFF}, planned_price(OFF_PEAK_UTC)),
    "tariff.peak_import_price": (0.40, 0.50, {"tariff": PEAK}, planned_price(IN_PEAK_UTC)),
    "tariff.peak_export_price": (0.10, 0.12, {"tariff": PEAK}, planned_price(IN_PEAK_UTC)),
    "tariff.peak_from_hour": (
        17,
        19,
        {"tariff": {**PEAK, "peak_import_price": 0.4}},
        planned_price(IN_PEAK_UTC),
    ),
    "tariff.peak_to_hour": (
        21,
        18,
        {"tariff": {**PEAK, "peak_import_price": 0.4}},
        planned_price(IN_PEAK_UTC),
    ),
    "tariff.demand_charge_per_kw": (
        0.0,
        12.5,
        {"tariff": TARIFF},
        planned_demand_charge,
    ),
}


@pytest.fixture
def ctx(tmp_path: Path, db):
    settings: Settings = replace(load(), state_dir=tmp_path, key_file=tmp_path / "api_key")
    controller = ControllerFactory(code="CTRL001", model="Amperio-GW", firmware_version="1.0.0")
    FirmwareReleaseFactory(version="1.1.0", channel="stable")
    FirmwareReleaseFactory(version="1.2.0-beta.1", channel="beta")

    return SimpleNamespace(
        settings=settings,
        state=GatewayState(settings.state_path),
        gateway=Gateway(settings),
        controller=controller,
    )


def test_every_accepted_setting_has_a_check_of_what_the_gateway_does_with_it():
    assert sorted(CHECKS) == sorted(setting_paths()), (
        "A setting Enexa accepts needs a check here showing the gateway honours it; "
        "a setting the gateway does not read must be removed from shared.site_config.RULES."
    )


@pytest.mark.parametrize("path", setting_paths())
def test_each_accepted_setting_changes_what_the_gateway_does(path, ctx):
    assert path in CHECKS, f"{path} is accepted by Enexa but no check shows the gateway uses it"
    value, other, base, behaviour = CHECKS[path]
    first_config, second_config = (gateway_config(path, v, base) for v in (value, other))
    for config in (first_config, second_config):  # values Enexa accepts, as the gateway does
        assert validate_document(config["settings"]) == {}
    first = behaviour(ctx, first_config)
    second = behaviour(ctx, second_config)
    assert first != second, f"{path}: {value!r} and {other!r} both give {first!r}"


@pytest.mark.parametrize(
    "document",
    [
        {"tariff": {"import_eur_per_kwh": 0.25}},
        {"telemetry": {"compression": "gzip"}},
        {"battery": {"cycles_per_day": 2}},
    ],
)
def test_a_setting_the_gateway_does_not_read_is_refused(document):
    assert validate_document(document), document
