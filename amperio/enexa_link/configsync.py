"""The gateway's configuration from Enexa: version poll, fetch on change, validate, keep on disk.

The applied configuration lives in `Settings.config_path` (written atomically), so a restarted
gateway works with it before Enexa answers; every module reads it through `load_config()`, or
the gateway's cycles through a `ConfigFile`, which parses it again only when it changed.
Syncing never touches the outbox: a configuration change must not wipe buffered readings."""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from amperio.enexa_link.client import EnexaClient
from amperio.settings import Settings
from amperio.state import GatewayState, StateKey
from shared import site_config
from shared.fields import format_timestamp

log = logging.getLogger(__name__)

# What the gateway runs with before Enexa has ever answered: the shared defaults, less the
# values Enexa fills in from the equipment (open there) and the Modbus section (until Enexa
# names the units, the gateway's own settings do: amperio.chargeposts).
UNKNOWN_SETTING = "Unknown setting."


def _known(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _known(v) for k, v in value.items() if v is not None}
    return value


DEFAULT_SETTINGS: dict[str, Any] = {
    key: _known(value) for key, value in site_config.DEFAULTS.items() if key != "modbus"
}


class ConfigInvalid(ValueError):
    """A configuration from Enexa the gateway refuses to apply; `errors`: field -> messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


@dataclass(frozen=True)
class SyncResult:
    """What one sync did (`unchanged`, `applied`, `invalid`, `not_provisioned`) and the version
    applied."""

    outcome: str
    version: int | None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration with every setting the gateway needs filled from the defaults."""
    return {
        "version": config.get("version"),
        "etag": config.get("etag"),
        "settings": _merge(DEFAULT_SETTINGS, config.get("settings") or {}),
        "limits": copy.deepcopy(config.get("limits") or {}),
    }


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a configuration from Enexa; returns it with defaults, or raises ConfigInvalid."""
    errors: dict[str, list[str]] = {}
    if not isinstance(config, dict) or not isinstance(config.get("settings", {}), dict):
        raise ConfigInvalid({"settings": ["Must be a JSON object."]})
    version = config.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        errors["version"] = ["Must be an integer."]
    full = with_defaults(config)
    s = full["settings"]
    for key, rule in site_config.RULES.items():
        if key != "modbus" and s.get(key) is not None:
            for path, message in site_config.section_errors(key, rule, s[key]):
                # A key this gateway does not know yet (a newer Enexa) is not a reason to
                # refuse the rest: it is left alone.
                if message != UNKNOWN_SETTING:
                    errors.setdefault(path, []).append(message)
    watchdog = s["watchdog"]
    if not errors and watchdog["timeout_s"] < 2 * watchdog["interval_s"]:
        # The heartbeat must come at half the hardware timeout or more often.
        errors["watchdog.timeout_s"] = ["Must be at least twice watchdog.interval_s."]
    modbus = s.get("modbus")
    if modbus is not None:
        # One ChargePost (an object) or several (a list), each checked as the shared rules say.
        for i, unit in enumerate(modbus if isinstance(modbus, list) else [modbus]):
            path = "modbus" if isinstance(modbus, dict) else f"modbus.{i}"
            if not isinstance(unit, dict) or not isinstance(unit.get("host"), str):
                errors.setdefault(path, []).append("Must be an object with a host.")
                continue
            for field, message in site_config.section_errors(
                path, site_config.RULES["modbus"], unit
            ):
                if message != UNKNOWN_SETTING:
                    errors.setdefault(field, []).append(message)
    if errors:
        raise ConfigInvalid(errors)
    return full


def operating_limits(config: dict[str, Any]) -> dict[str, Any]:
    """The limits commands are checked against: the equipment's, with the battery's charge and
    discharge power tightened to the configured `battery.max_charge_kw` / `max_discharge_kw`
    (operators may run a battery below what it can do). Empty when no limits are known."""
    limits = copy.deepcopy(config.get("limits") or {})
    settings = (config.get("settings") or {}).get("battery") or {}
    battery = limits.get("battery")
    if not isinstance(battery, dict):
        return limits
    for name in ("max_charge_kw", "max_discharge_kw"):
        configured = settings.get(name)
        if isinstance(configured, bool) or not isinstance(configured, (int, float)):
            continue
        equipment = battery.get(name)
        battery[name] = configured if equipment is None else min(equipment, configured)
    return limits


class ConfigFile:
    """The applied configuration file, for a process that asks for it every cycle: parsed
    again only when the file changed. `write_config` replaces it by rename, so each new version
    is a new inode; modification time and size catch a file edited in place."""

    def __init__(self, path: Path):
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._config: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        """The configuration (`version`, `settings`, `limits`), or the defaults when the file
        is missing or unreadable. Unchanged, it is the same dict: callers must not change it."""
        try:
            with self.path.open("rb") as f:
                # The identity of the file this very handle reads, so a rename between looking
                # and reading cannot pair one version's key with another's content.
                st = os.fstat(f.fileno())
                key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
                if key == self._key:
                    return self._config
                text = f.read()
        except FileNotFoundError:
            stored, key = {}, None
        else:
            try:
                stored = json.loads(text)
            except ValueError:
                log.error("Configuration file %s is unreadable; using defaults", self.path)
                stored, key = {}, None  # not kept: read (and reported) again next time
        self._key, self._config = key, with_defaults(stored)
        return self._config


def load_config(settings: Settings) -> dict[str, Any]:
    """The applied configuration (`version`, `settings`, `limits`), or the defaults."""
    return ConfigFile(settings.config_path).load()


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous file, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_config(
    settings: Settings,
    state: GatewayState,
    config: dict[str, Any],
    now: datetime,
    etag: str | None = None,
) -> dict[str, Any]:
    """Validate and apply a configuration (from a sync or from provisioning)."""
    full = validate_config(config)
    full["etag"] = etag
    write_config(settings.config_path, full)
    state.update(
        {
            StateKey.CONFIG_VERSION: full["version"],
            StateKey.CONFIG_APPLIED_AT: format_timestamp(now),
            StateKey.CONFIG_ERROR: None,
        }
    )
    log.info("Configuration version %s applied (site %s)", full["version"], settings.site_id)
    return full


def controller_id(state: GatewayState) -> str | None:
    """The controller id Enexa gave at provisioning (env override for tests and demos)."""
    return os.environ.get("AMPERIO_CONTROLLER_ID") or state.get(StateKey.CONTROLLER_ID)


def sync_config(
    client: EnexaClient, settings: Settings, state: GatewayState, now: datetime
) -> SyncResult:
    """Poll the version; fetch, validate and apply the full configuration only when it changed."""
    current = load_config(settings)
    ctrl = controller_id(state)
    if not ctrl:
        log.warning("No controller id yet: provision the gateway (site %s)", settings.site_id)
        return SyncResult("not_provisioned", current["version"])
    remote = client.config_version(ctrl).get("version")
    state.set(StateKey.CONFIG_CHECKED_AT, format_timestamp(now))
    if remote is not None and remote == current["version"]:
        return SyncResult("unchanged", current["version"])
    config, etag = client.config(ctrl, etag=current.get("etag"))
    if config is None:  # 304: the ETag still matches what we applied
        return SyncResult("unchanged", current["version"])
    try:
        applied = apply_config(settings, state, config, now, etag)
    except ConfigInvalid as exc:
        log.error("Configuration version %s refused: %s", config.get("version"), exc)
        state.set(StateKey.CONFIG_ERROR, {"version": config.get("version"), "errors": exc.errors})
        return SyncResult("invalid", current["version"])
    return SyncResult("applied", applied["version"])
