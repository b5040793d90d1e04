"""Configuration services: effective configuration, validation, versions, history and rollback.

Two sparse JSON documents hold what operators set: the site's settings (`SiteConfig.settings`)
and a controller's overrides (`ControllerConfig.overrides`). A controller's effective settings
are DEFAULTS <- site settings <- controller overrides (a recursive merge; lists are replaced
whole; keys, defaults and ranges in shared.site_config), with the values left open (null in
DEFAULTS) filled from the limits (enexa.configs.limits). Every change that
alters a controller's effective configuration (settings or limits) stores a new immutable
`ConfigVersion` whose number only grows, per controller.

What `GET /v1/controllers/{id}/config` answers (`effective_config_for`), the shape the gateway
(Amperio) consumes:

    {
      "version": 5,
      "settings": {
        "modbus": {"host": "10.0.0.5", "port": 502, "device_id": 1},  # only when set (*)
        "watchdog": {"interval_s": 10, "timeout_s": 30},   # interval 2-60 s, timeout >= 2x
        "telemetry": {"interval_s": 5, "batch_size": 100},
        "status": {"interval_s": 30},
        "config_poll_interval_s": 60,
        "battery": {"soc_min_pct": 10.0, "soc_max_pct": 90.0, "reserve_pct": 20.0,
                    "max_charge_kw": 220.0, "max_discharge_kw": 220.0},
        "grid": {"limit_kw": 400.0},
        "autonomy": {"enter_after_s": 60, "mode": "follow_schedule_then_safe"},
        "setpoint_validity_s": 300,
        "firmware": {"channel": "stable"}                              # or "beta"
      },
      "limits": {
        "battery": {"max_charge_kw": 220.0, "max_discharge_kw": 220.0, "capacity_kwh": 280.0,
                    "soc_min_pct": 5.0, "soc_max_pct": 95.0,
                    "units": {"BAT1": {"max_charge_kw": 110.0, "max_discharge_kw": 110.0,
                                       "capacity_kwh": 140.0, "soc_min_pct": 5.0,
                                       "soc_max_pct": 95.0}}},
        "chargers": {"CHG1": {"max_power_kw": 300.0}},
        "grid": {"limit_kw": 400.0}
      }
    }

(*) "modbus" appears only when staff set a host for the site or the controller, and holds
only the keys that are set; without it the gateway uses its own environment. A site of
several ChargePosts has a list there, one such object per ChargePost (each with its host).

Limits come from the registry: the specs of the equipment the controller runs (its assigned
assets, or the whole site when none are assigned): battery charge/discharge power is
the sum over its units (capped by the system's own spec when set), the SOC band is the
tightest band of system and units, the grid limit is the site's connection limit. A
controller without a battery has battery limits of 0 kW, band 0-100 and no units (and the
battery power settings are not checked against them). Settings left open
(battery power and SOC band, grid limit) default to the limits, the SOC band to 10-90 % within
the equipment band, the reserve to 20 % within the band.

`GET /v1/config/{site_id}` answers `site_config_document`: the site-level effective settings
(same keys as "settings" above) plus "site_id", "revision" (its ETag) and "updated_at".
Writes take JSON merge-patch semantics for PATCH (null removes a value, so it is inherited)
and replace the level's document for PUT.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from enexa.core.errors import InvalidInput, NotFoundError, PreconditionFailed
from enexa.registry.models import Controller, Site
from shared.site_config import RULES, merge, merged
from shared.site_config import validate as validate_document

from .limits import (
    fill_open_settings,
    limits_for_controller,
    limits_for_site,
    limits_from,
    validate_effective,
)
from .models import ConfigState, ConfigVersion, ControllerConfig, SiteConfig

READ_ONLY_KEYS = ("site_id", "revision", "updated_at", "version")


# --- documents ---------------------------------------------------------------------------------


def _prune(doc: dict) -> dict:
    """Drop nulls and empty sections: a sparse document stores only what is set."""
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            value = _prune(value)
            if value:
                out[key] = value
        elif isinstance(value, list):  # several ChargePosts under `modbus`: each unit pruned
            out[key] = [_prune(item) if isinstance(item, dict) else item for item in value]
        elif value is not None:
            out[key] = value
    return out


def _site_doc(site: Site) -> dict:
    config = SiteConfig.objects.filter(site=site).first()
    return config.settings if config else {}


def _overrides(controller: Controller) -> dict:
    config = ControllerConfig.objects.filter(controller=controller).first()
    return config.overrides if config else {}


def compute_effective(
    controller: Controller,
    *,
    site_doc: dict | None = None,
    overrides: dict | None = None,
    limits: dict | None = None,
) -> dict:
    """The effective settings and limits from the current documents (not a stored version)."""
    site = controller.site
    limits = limits if limits is not None else limits_for_controller(controller)
    site_doc = site_doc if site_doc is not None else _site_doc(site)
    overrides = overrides if overrides is not None else _overrides(controller)
    return {"settings": fill_open_settings(merged(site_doc, overrides), limits), "limits": limits}


# --- versions ---------------------------------------------------------------------------------


def _record(
    controller: Controller, effective: dict, *, by: str, reason: str
) -> ConfigVersion | None:
    """Store a new version when `effective` differs from the current one (call in a transaction).

    The state row is locked so that two writers never take the same number."""
    state = ConfigState.objects.select_for_update().filter(controller=controller).first()
    if state is not None:
        current = ConfigVersion.objects.get(controller=controller, number=state.version)
        if current.settings == effective["settings"] and current.limits == effective["limits"]:
            return None
    number = state.version + 1 if state else 1
    version = ConfigVersion.objects.create(
        controller=controller,
        number=number,
        settings=effective["settings"],
        limits=effective["limits"],
        created_by=by,
        reason=reason[:200],
    )
    if state is None:
        ConfigState.objects.create(
            controller=controller, version=number, updated_at=version.created_at
        )
    else:
        ConfigState.objects.filter(pk=state.pk).update(
            version=number, updated_at=version.created_at
        )
    return version


def ensure_initial_version(controller: Controller, *, by: str = "system") -> None:
    """Version 1 of a new controller (called when it is created; safe to call twice)."""
    if ConfigState.objects.filter(controller=controller).exists():
        return
    try:
        with transaction.atomic():
            _record(controller, compute_effective(controller), by=by, reason="initial")
    except IntegrityError:  # created concurrently: the other writer's version 1 stands
        pass


def current_version(controller_pk: int) -> tuple[int, datetime] | None:
    """(version, updated_at) of a controller: one primary-key read, no write."""
    row = ConfigState.objects.filter(pk=controller_pk).values_list("version", "updated_at")
    return row.first()


def effective_config_for(controller: Controller) -> dict:
    """The current version: `{"version", "settings", "limits"}` (see the module docstring)."""
    state = ConfigState.objects.filter(pk=controller.pk).first()
    if state is None:  # a controller that missed its creation signal (bulk_create, raw load)
        ensure_initial_version(controller)
        state = ConfigState.objects.get(pk=controller.pk)
    version = ConfigVersion.objects.get(controller_id=controller.pk, number=state.version)
    return {"version": version.number, "settings": version.settings, "limits": version.limits}


def current_settings(controllers: list[Controller]) -> dict[int, dict]:
    """The settings of each controller's current version (as `effective_config_for` has them),
    by primary key, in one read; a controller that missed its version 1 gets it."""
    found = dict(
        ConfigVersion.objects.filter(
            controller__in=controllers, number=F("controller__config_state__version")
        )
        .order_by()
        .values_list("controller_id", "settings")
    )
    return {
        c.pk: found[c.pk] if c.pk in found else effective_config_for(c)["settings"]
        for c in controllers
    }


def record_applied_version(controller_pk: int, version: int, *, at: datetime | None = None) -> None:
    """The gateway reports the version it runs (status report); a repeat writes nothing."""
    ConfigState.objects.filter(pk=controller_pk).exclude(applied_version=version).update(
        applied_version=version, applied_at=at or timezone.now()
    )


def _check_if_match(if_match: int | None, current: int) -> None:
    if if_match is not None and if_match != current:
        raise PreconditionFailed(
            f"The configuration is at version {current}, not {if_match}; reload and retry."
        )


def _clean_changes(changes: Any) -> dict:
    if not isinstance(changes, dict):
        raise InvalidInput(
            "The configuration must be an object.", {"non_field_errors": ["Must be an object."]}
        )
    return {k: v for k, v in changes.items() if k not in READ_ONLY_KEYS}


def _refuse(errors: dict[str, list[str]], what: str) -> None:
    if errors:
        raise InvalidInput(f"The {what} configuration is invalid; nothing was changed.", errors)


def _new_doc(old: dict, changes: dict, replace: bool) -> dict:
    _refuse(validate_document(changes), "new")
    return _prune(changes) if replace else _prune(merge(old, changes))


def _site_effects(site: Site, doc: dict) -> tuple[dict[str, list[str]], list, dict]:
    """Field errors of a site document, and each controller's effective config under it."""
    equipment = list(site.equipment.all())
    limits = limits_from(site, equipment)
    errors = validate_document(doc) or validate_effective(
        fill_open_settings(merged(doc), limits), limits
    )
    controllers = list(site.controllers.select_related("site").prefetch_related("assets"))
    if errors:
        return errors, controllers, {}
    overrides = {
        c.controller_id: c.overrides for c in ControllerConfig.objects.filter(controller__site=site)
    }
    effective = {}
    for controller in controllers:
        effective[controller.pk] = compute_effective(
            controller,
            site_doc=doc,
            overrides=overrides.get(controller.pk, {}),
            limits=limits_for_controller(controller, equipment),
        )
        for path, messages in validate_effective(
            effective[controller.pk]["settings"], effective[controller.pk]["limits"]
        ).items():
            errors.setdefault(path, []).extend(
                f"{m} (with the overrides of {controller.code})" for m in messages
            )
    return errors, controllers, effective


def validate_site_config(site: Site, doc: Any) -> dict[str, list[str]]:
    """Field errors of `doc` as the site's whole settings document (the admin form uses it)."""
    if not isinstance(doc, dict):
        return {"settings": ["Must be an object."]}
    return _site_effects(site, _prune(doc))[0]


def validate_controller_config(controller: Controller, doc: Any) -> dict[str, list[str]]:
    """Field errors of `doc` as the controller's whole overrides document."""
    if not isinstance(doc, dict):
        return {"overrides": ["Must be an object."]}
    errors = validate_document(doc)
    if errors:
        return errors
    effective = compute_effective(controller, overrides=_prune(doc))
    return validate_effective(effective["settings"], effective["limits"])


def update_site_config(
    site: Site, changes: dict, *, if_match: int | None, by: str, replace: bool = False
) -> dict:
    """Change a site's settings (PATCH: merge; PUT: `replace`) and version every controller
    whose effective configuration changes. Returns the new site document.

    A stale `if_match` is refused (412) unless the change is already in place, so a replayed
    request answers the first result instead of failing."""
    changes = _clean_changes(changes)
    with transaction.atomic():
        config, _ = SiteConfig.objects.get_or_create(site=site)
        config = SiteConfig.objects.select_for_update().get(pk=config.pk)
        doc = _new_doc(config.settings, changes, replace)
        if doc != config.settings:
            _check_if_match(if_match, config.revision)
        errors, controllers, effective = _site_effects(site, doc)
        _refuse(errors, "site")
        if doc != config.settings:
            config.settings = doc
            config.revision += 1
            config.updated_by = by
            config.save()
        for controller in controllers:
            _record(
                controller,
                effective[controller.pk],
                by=by,
                reason=f"site {site.code} configuration changed",
            )
    return site_config_document(site)


def update_controller_config(
    controller: Controller, changes: dict, *, if_match: int | None, by: str, replace: bool = False
) -> dict:
    """Change a controller's overrides; a new version when its effective config changes.
    Returns the (new) current config. Stale `if_match`: as for `update_site_config`."""
    changes = _clean_changes(changes)
    ensure_initial_version(controller)
    with transaction.atomic():
        state = ConfigState.objects.select_for_update().get(pk=controller.pk)
        config, _ = ControllerConfig.objects.get_or_create(controller=controller)
        doc = _new_doc(config.overrides, changes, replace)
        if doc != config.overrides:
            _check_if_match(if_match, state.version)
        effective = compute_effective(controller, overrides=doc)
        _refuse(validate_effective(effective["settings"], effective["limits"]), "controller")
        if doc != config.overrides:
            config.overrides = doc
            config.updated_by = by
            config.save()
        _record(controller, effective, by=by, reason="controller configuration changed")
    return effective_config_for(controller)


def get_version(controller: Controller, number: int) -> ConfigVersion:
    version = ConfigVersion.objects.filter(controller=controller, number=number).first()
    if version is None:
        raise NotFoundError(f"{controller.code} has no configuration version {number}.")
    return version


def _overrides_to_reach(target: dict, base: dict, rules: dict = RULES) -> dict:
    """The sparse overrides that turn `base` settings into `target`; a setting no longer
    accepted (retired since `target` was stored) is left out."""
    out: dict[str, Any] = {}
    for key, value in target.items():
        rule = rules.get(key)
        if rule is None:
            continue
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            nested = _overrides_to_reach(value, base[key], rule)
            if nested:
                out[key] = nested
        elif base.get(key) != value:
            out[key] = value
    return _prune(out)


def restore_version(
    controller: Controller, number: int, *, by: str, if_match: int | None = None
) -> dict:
    """Roll back: a new version whose settings equal version `number` (limits stay today's).
    The controller's overrides are rewritten to whatever reaches those settings; a setting the
    old version lacks (one added since, or a Modbus endpoint set since) keeps today's value, and
    one retired since is not brought back."""
    old = get_version(controller, number)
    ensure_initial_version(controller)
    with transaction.atomic():
        state = ConfigState.objects.select_for_update().get(pk=controller.pk)
        site_raw = merged(_site_doc(controller.site))
        doc = _overrides_to_reach(old.settings, site_raw)
        config, _ = ControllerConfig.objects.get_or_create(controller=controller)
        if doc != config.overrides:
            _check_if_match(if_match, state.version)
        effective = compute_effective(controller, overrides=doc)
        _refuse(validate_effective(effective["settings"], effective["limits"]), "restored")
        config.overrides = doc
        config.updated_by = by
        config.save()
        _record(controller, effective, by=by, reason=f"restore of version {number}")
    return effective_config_for(controller)


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def diff_versions(a: ConfigVersion, b: ConfigVersion) -> list[dict]:
    """What changed from version `a` to `b`: `[{"path", "from", "to"}]`, paths like
    `settings.battery.soc_min_pct` (a value absent on one side is null there)."""
    before = _flatten({"settings": a.settings, "limits": a.limits}, "")
    after = _flatten({"settings": b.settings, "limits": b.limits}, "")
    return [
        {"path": path, "from": before.get(path), "to": after.get(path)}
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    ]


def site_config_document(site: Site) -> dict:
    """A site's effective site-level settings with its revision (no controller overrides)."""
    config = SiteConfig.objects.filter(site=site).first()
    settings = fill_open_settings(merged(config.settings if config else {}), limits_for_site(site))
    return {
        "site_id": site.code,
        "revision": config.revision if config else 1,
        "updated_at": config.updated_at if config else site.created_at,
        **settings,
    }


def sync_site_versions(
    site_pk: int, *, by: str = "registry", reason: str = "equipment changed"
) -> int:
    """After a registry change: version every controller of the site whose effective config
    (its limits, or settings filled from them) changed. Returns how many got a new version."""
    controllers = list(
        Controller.objects.filter(site_id=site_pk).select_related("site").prefetch_related("assets")
    )
    if not controllers:
        return 0
    site = controllers[0].site
    equipment = list(site.equipment.all())
    site_doc = _site_doc(site)
    created = 0
    with transaction.atomic():
        for controller in controllers:
            limits = limits_for_controller(controller, equipment)
            effective = compute_effective(controller, site_doc=site_doc, limits=limits)
            created += _record(controller, effective, by=by, reason=reason) is not None
    return created
