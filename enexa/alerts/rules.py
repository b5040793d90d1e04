"""The alert rules: each a small function returning the sites where its condition holds now,
with the detail an operator needs. The evaluator (services.evaluate) opens, updates and
resolves the alerts from what they return.

Each check takes `now` and the sites to look at (None: every site) and returns
{site primary key: detail}; thresholds are the ENEXA_ALERT_* settings (docs/configuration.md).
The gateway rules (HEALTH_RULES: gateway_degraded, modbus_link_down, watchdog_fallback) read
the gateway health Enexa polls from Amperio (`SiteStatus.gateway_health`) while that is fresh
(polled within ENEXA_ALERT_HEALTH_FRESH_S), and what the gateway reports of itself (status
reports, events) when it is missing or stale: Amperio being unreachable is not the gateway's
fault. Their detail's `source` says which was read, `health_at` when the health was polled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, OuterRef, QuerySet, Subquery

from enexa.configs.models import ConfigState
from enexa.configs.services import current_settings
from enexa.dispatch.choices import CommandStatus
from enexa.dispatch.models import Command
from enexa.firmware.choices import ReportStatus
from enexa.firmware.models import FirmwareReport
from enexa.registry.choices import ControllerState
from enexa.registry.models import Controller
from enexa.telemetry.models import Event, SiteStatus, SiteStatusTransition, TelemetryReading
from shared.fields import format_timestamp

from .choices import Severity

Found = dict[int, dict[str, Any]]
Check = Callable[[datetime, "set[int] | None"], Found]

# ChargePost alarm register bit 0: the unit fell back to its safe state (watchdog).
WATCHDOG_FALLBACK_BIT = 0
# Modes in which a gateway no longer follows Enexa's plan.
DEGRADED_MODES = ("safe", "autonomous")
# Controllers whose configuration and firmware are followed (the others are not in service).
IN_SERVICE = (ControllerState.REGISTERED, ControllerState.ACTIVE)
# Where a gateway rule read what it judged (its detail's `source`): Amperio's polled health,
# or, without fresh health, the gateway's own status report or events.
SOURCE_HEALTH = "amperio_health"
SOURCE_STATUS_REPORT = "status_report"
SOURCE_EVENTS = "gateway_events"
# The rules that read the polled health: re-checked right after each poll stores it.
HEALTH_RULES = ["gateway_degraded", "modbus_link_down", "watchdog_fallback"]
# At most this many commands or controllers are listed in one alert's detail.
DETAIL_ITEMS = 20


@dataclass(frozen=True)
class Rule:
    """A named check with its severity."""

    name: str
    severity: str
    check: Check


RULES: dict[str, Rule] = {}


def rule(name: str, severity: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        RULES[name] = Rule(name, severity, check)
        return check

    return register


def _narrow(queryset: QuerySet, site_pks: set[int] | None, field: str = "site_id") -> QuerySet:
    return queryset if site_pks is None else queryset.filter(**{f"{field}__in": site_pks})


def _ts(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def _latest(model: Any, field: str, **filters: Any) -> Subquery:
    """The newest row's `field` of `model` for the outer row's site."""
    rows = model.objects.filter(site_id=OuterRef("site_id"), **filters).order_by("-timestamp")
    return Subquery(rows.values(field)[:1])


@rule("site_offline", Severity.CRITICAL)
def site_offline(now: datetime, site_pks: set[int] | None) -> Found:
    """Silent past ENEXA_OFFLINE_AFTER_S, or the gateway said it goes away (a site never heard
    from is not offline: it was never online)."""
    rows = _narrow(SiteStatus.objects.filter(online=False, last_seen_at__isnull=False), site_pks)
    return {
        pk: {"last_seen_at": _ts(seen)} for pk, seen in rows.values_list("site_id", "last_seen_at")
    }


def _fresh_health(status: SiteStatus, now: datetime) -> dict[str, Any] | None:
    """The site's gateway health as Amperio last told it, if polled within
    ENEXA_ALERT_HEALTH_FRESH_S and the site was listed; None (missing, stale, not reported):
    the rule reads the gateway's own reports instead."""
    health, at = status.gateway_health, status.gateway_health_at
    if not isinstance(health, dict) or at is None or health.get("status") == "not_reported":
        return None
    if at < now - timedelta(seconds=settings.ENEXA_ALERT_HEALTH_FRESH_S):
        return None
    return health


def _fallback(status: SiteStatus, source: str) -> dict[str, Any]:
    # When the health was last polled (None: never) says why the gateway's own word was read.
    return {"source": source, "health_at": _ts(status.gateway_health_at)}


def _degraded_parts(health: dict[str, Any]) -> list[str]:
    """Why Amperio calls the gateway degraded, from the parts its health lists."""
    if health.get("status") != "degraded":
        return []
    parts = []
    if health.get("modbus_link_up") is False:
        parts.append("modbus link down")
    if health.get("watchdog_beating") is False:
        parts.append("watchdog not beating")
    if health.get("unconfirmed_commands"):
        parts.append(f"{health['unconfirmed_commands']} unconfirmed commands")
    age_s, last_report_at = health.get("last_report_age_s"), health.get("last_report_at")
    # Amperio counts a gateway silent past its own threshold as degraded; the time of the last
    # report (not its age, which grows every poll) keeps the detail steady while that lasts.
    if age_s is not None and (not parts or age_s > settings.ENEXA_ALERT_HEALTH_FRESH_S):
        parts.append(f"no report to Amperio since {last_report_at}")
    return parts or ["Amperio reports it degraded"]


@rule("gateway_degraded", Severity.WARNING)
def gateway_degraded(now: datetime, site_pks: set[int] | None) -> Found:
    """An online gateway that Amperio's fresh health calls degraded (the parts: link, watchdog,
    unconfirmed commands, report age), or in safe or autonomous mode, or with a deep outbox (it
    cannot send); without fresh health, mode and outbox as its last status report gave them."""
    depth = settings.ENEXA_ALERT_BUFFER_DEPTH_MAX
    found: Found = {}
    rows = _narrow(SiteStatus.objects.filter(online=True), site_pks).only(
        "site_id", "mode", "buffer_depth", "gateway_health", "gateway_health_at"
    )
    for status in rows:
        health = _fresh_health(status, now)
        if health is not None:
            detail: dict[str, Any] = {"source": SOURCE_HEALTH}
            mode, buffer_depth = health.get("mode"), health.get("buffer_depth")
            reasons = _degraded_parts(health)
        else:
            detail = _fallback(status, SOURCE_STATUS_REPORT)
            mode, buffer_depth, reasons = status.mode, status.buffer_depth, []
        if mode in DEGRADED_MODES:
            reasons.append(f"mode {mode}")
        if buffer_depth is not None and buffer_depth >= depth:
            reasons.append(f"outbox holds {buffer_depth} readings")
        if reasons:
            found[status.site_id] = {
                **detail,
                "mode": mode,
                "buffer_depth": buffer_depth,
                "reasons": reasons,
            }
    return found


@rule("modbus_link_down", Severity.CRITICAL)
def modbus_link_down(now: datetime, site_pks: set[int] | None) -> Found:
    """The gateway cannot reach its ChargePost: Amperio's fresh health says the link is down
    (a `modbus_link` event received after that poll speaks instead, until the next poll);
    without fresh health, the newer of its last `modbus_link` event and its last status
    report."""
    rows = _narrow(SiteStatus.objects.all(), site_pks).annotate(
        event_state=_latest(Event, "data__state", kind="modbus_link"),
        event_at=_latest(Event, "timestamp", kind="modbus_link"),
        event_received_at=_latest(Event, "received_at", kind="modbus_link"),
        event_error=_latest(Event, "data__error", kind="modbus_link"),
    )
    found: Found = {}
    for status in rows:
        health = _fresh_health(status, now)
        event_since_poll = status.event_received_at is not None and (
            status.gateway_health_at is None or status.event_received_at > status.gateway_health_at
        )
        if health is not None and health.get("modbus_link_up") is not None and not event_since_poll:
            detail: dict[str, Any] = {"source": SOURCE_HEALTH}
            down = health["modbus_link_up"] is False
        else:
            event_newer = status.event_at is not None and (
                status.reported_at is None or status.event_at >= status.reported_at
            )
            if event_newer or status.modbus_link_up is None:
                detail = _fallback(status, SOURCE_EVENTS)
                down = status.event_state == "down"
            else:
                detail = _fallback(status, SOURCE_STATUS_REPORT)
                down = status.modbus_link_up is False
        if down:
            found[status.site_id] = {
                **detail,
                "since": _ts(status.event_at) if status.event_state == "down" else None,
                "error": status.event_error if status.event_state == "down" else None,
            }
    return found


def _chargepost_alarms(site_pks: set[int] | None) -> dict[int, dict[int, dict[str, Any]]]:
    """{site: {chargepost: {"alarm_bits", "at", "message"}}}: the newest alarm word each
    ChargePost reported (alarm and watchdog events both carry it)."""
    events = _narrow(Event.objects.filter(kind__in=("alarm", "watchdog")), site_pks)
    state: dict[int, dict[int, dict[str, Any]]] = {}
    for site_pk, at, data, message in events.order_by("timestamp", "id").values_list(
        "site_id", "timestamp", "data", "message"
    ):
        bits, chargepost = data.get("alarm_bits"), data.get("chargepost")
        if isinstance(bits, int) and isinstance(chargepost, int):
            state.setdefault(site_pk, {})[chargepost] = {
                "alarm_bits": bits,
                "at": _ts(at),
                "message": message,
            }
    return state


@rule("watchdog_fallback", Severity.CRITICAL)
def watchdog_fallback(now: datetime, site_pks: set[int] | None) -> Found:
    """A ChargePost fell back to its safe state: Amperio's fresh health says the watchdog of an
    online site no longer beats, or a ChargePost's watchdog bit is still raised (its alarm
    events, read whether or not the health is fresh)."""
    not_beating = _narrow(
        SiteStatus.objects.filter(online=True, gateway_health__watchdog_beating=False), site_pks
    ).only("site_id", "gateway_health", "gateway_health_at")
    stopped = {s.site_id for s in not_beating if _fresh_health(s, now) is not None}
    found: Found = {}
    for site_pk, chargeposts in _chargepost_alarms(site_pks).items():
        fallen = [
            {"chargepost": n, "since": a["at"]}
            for n, a in sorted(chargeposts.items())
            if a["alarm_bits"] & (1 << WATCHDOG_FALLBACK_BIT)
        ]
        if fallen:
            found[site_pk] = {"source": SOURCE_EVENTS, "chargeposts": fallen}
    for site_pk in stopped:
        chargeposts = found.get(site_pk, {}).get("chargeposts", [])
        found[site_pk] = {
            "source": SOURCE_HEALTH,
            "watchdog_beating": False,
            "chargeposts": chargeposts,
        }
    return found


@rule("chargepost_alarm", Severity.WARNING)
def chargepost_alarm(now: datetime, site_pks: set[int] | None) -> Found:
    """A ChargePost reports alarm bits other than the watchdog's (which has its own rule)."""
    found: Found = {}
    other_bits = 0xFFFF & ~(1 << WATCHDOG_FALLBACK_BIT)
    for site_pk, chargeposts in _chargepost_alarms(site_pks).items():
        raised = [
            {
                "chargepost": n,
                "alarm_bits": a["alarm_bits"],
                "bits": [b for b in range(16) if a["alarm_bits"] & other_bits & (1 << b)],
                "since": a["at"],
                "message": a["message"],
            }
            for n, a in sorted(chargeposts.items())
            if a["alarm_bits"] & other_bits
        ]
        if raised:
            found[site_pk] = {"chargeposts": raised}
    return found


FAILED_COMMANDS = (CommandStatus.FAILED, CommandStatus.REJECTED, CommandStatus.EXPIRED)


@rule("command_failed", Severity.WARNING)
def command_failed(now: datetime, site_pks: set[int] | None) -> Found:
    """Commands that failed, were rejected or expired within ENEXA_ALERT_COMMAND_WINDOW_S
    (the alert resolves once the window has passed them)."""
    since = now - timedelta(seconds=settings.ENEXA_ALERT_COMMAND_WINDOW_S)
    commands = _narrow(
        Command.objects.filter(status__in=FAILED_COMMANDS, updated_at__gte=since), site_pks
    ).order_by("-updated_at")
    found: Found = {}
    for command in commands.values("site_id", "command_id", "command", "status", "detail"):
        detail = found.setdefault(command.pop("site_id"), {"count": 0, "commands": []})
        detail["count"] += 1
        if len(detail["commands"]) < DETAIL_ITEMS:
            detail["commands"].append(command)
    return found


def _site_settings(site_pks: set[int]) -> dict[int, dict]:
    """The effective settings of each site (its first controller in service), by site."""
    controllers = list(
        Controller.objects.filter(site_id__in=site_pks, state__in=IN_SERVICE).order_by("pk")
    )
    by_controller = current_settings(controllers)
    out: dict[int, dict] = {}
    for controller in controllers:
        out.setdefault(controller.site_id, by_controller[controller.pk])
    return out


def _fresh_since(now: datetime) -> datetime:
    """Readings older than this say nothing about now (the telemetry gap rule covers them)."""
    return now - timedelta(seconds=settings.ENEXA_ALERT_TELEMETRY_GAP_S)


@rule("soc_out_of_band", Severity.WARNING)
def soc_out_of_band(now: datetime, site_pks: set[int] | None) -> Found:
    """The newest reading's SOC is outside the site's band (battery.soc_min_pct ..
    soc_max_pct) by more than ENEXA_ALERT_SOC_MARGIN_PCT."""
    rows = _narrow(SiteStatus.objects.filter(online=True), site_pks).annotate(
        soc_pct=_latest(TelemetryReading, "battery_soc_pct"),
        at=_latest(TelemetryReading, "timestamp"),
    )
    latest = {
        s.site_id: (s.soc_pct, s.at)
        for s in rows
        if s.soc_pct is not None and s.at >= _fresh_since(now)
    }
    margin = settings.ENEXA_ALERT_SOC_MARGIN_PCT
    found: Found = {}
    for site_pk, site_settings in _site_settings(set(latest)).items():
        soc, at = latest[site_pk]
        low, high = site_settings["battery"]["soc_min_pct"], site_settings["battery"]["soc_max_pct"]
        if low is not None and high is not None and not low - margin <= soc <= high + margin:
            found[site_pk] = {
                "soc_pct": soc,
                "soc_min_pct": low,
                "soc_max_pct": high,
                "at": _ts(at),
            }
    return found


@rule("grid_import_over_limit", Severity.WARNING)
def grid_import_over_limit(now: datetime, site_pks: set[int] | None) -> Found:
    """Every reading for ENEXA_ALERT_GRID_OVER_LIMIT_S and the newest one import more than the
    site's grid.limit_kw."""
    hold = timedelta(seconds=settings.ENEXA_ALERT_GRID_OVER_LIMIT_S)
    online = set(
        _narrow(SiteStatus.objects.filter(online=True), site_pks).values_list("site_id", flat=True)
    )
    found: Found = {}
    for site_pk, site_settings in _site_settings(online).items():
        limit_kw = site_settings["grid"]["limit_kw"]
        if limit_kw is None:
            continue
        readings = TelemetryReading.objects.filter(
            site_id=site_pk, grid_import_kw__isnull=False
        ).order_by("-timestamp")
        newest = readings.values("timestamp", "grid_import_kw").first()
        if newest is None or newest["grid_import_kw"] <= limit_kw:
            continue
        if newest["timestamp"] < _fresh_since(now):
            continue
        last_ok = (
            readings.filter(grid_import_kw__lte=limit_kw)
            .values_list("timestamp", flat=True)
            .first()
        )
        over = readings.filter(grid_import_kw__gt=limit_kw)
        if last_ok is not None:
            over = over.filter(timestamp__gt=last_ok)
        over_since = over.order_by("timestamp").values_list("timestamp", flat=True).first()
        if over_since is not None and over_since <= now - hold:
            found[site_pk] = {
                "grid_import_kw": newest["grid_import_kw"],
                "limit_kw": limit_kw,
                "over_since": _ts(over_since),
            }
    return found


@rule("firmware_update_failed", Severity.WARNING)
def firmware_update_failed(now: datetime, site_pks: set[int] | None) -> Found:
    """A controller's newest firmware report says its update failed."""
    newest = FirmwareReport.objects.filter(controller_id=OuterRef("pk")).order_by(
        "-reported_at", "-pk"
    )
    controllers = _narrow(Controller.objects.filter(state__in=IN_SERVICE), site_pks).annotate(
        report_status=Subquery(newest.values("status")[:1]),
        target_version=Subquery(newest.values("target_version")[:1]),
        error=Subquery(newest.values("error")[:1]),
        reported_at=Subquery(newest.values("reported_at")[:1]),
    )
    found: Found = {}
    for c in controllers.filter(report_status=ReportStatus.FAILED).order_by("code"):
        items = found.setdefault(c.site_id, {"controllers": []})["controllers"]
        items.append(
            {
                "controller_id": c.code,
                "target_version": c.target_version,
                "error": c.error,
                "reported_at": _ts(c.reported_at),
            }
        )
    return found


@rule("config_drift", Severity.WARNING)
def config_drift(now: datetime, site_pks: set[int] | None) -> Found:
    """A controller has not applied its current configuration version for longer than
    ENEXA_ALERT_CONFIG_DRIFT_S."""
    since = now - timedelta(seconds=settings.ENEXA_ALERT_CONFIG_DRIFT_S)
    states = _narrow(
        ConfigState.objects.filter(updated_at__lt=since, controller__state__in=IN_SERVICE).exclude(
            applied_version=F("version")
        ),
        site_pks,
        "controller__site_id",
    )
    found: Found = {}
    for site_pk, code, version, applied, updated_at in states.order_by(
        "controller__code"
    ).values_list(
        "controller__site_id", "controller__code", "version", "applied_version", "updated_at"
    ):
        items = found.setdefault(site_pk, {"controllers": []})["controllers"]
        if len(items) < DETAIL_ITEMS:
            items.append(
                {
                    "controller_id": code,
                    "version": version,
                    "applied_version": applied,
                    "since": _ts(updated_at),
                }
            )
    return found


@rule("telemetry_gap", Severity.WARNING)
def telemetry_gap(now: datetime, site_pks: set[int] | None) -> Found:
    """An online site without a reading for ENEXA_ALERT_TELEMETRY_GAP_S (counted from when it
    came online, if later)."""
    online_since = SiteStatusTransition.objects.filter(
        site_id=OuterRef("site_id"), online=True
    ).order_by("-at")
    rows = _narrow(SiteStatus.objects.filter(online=True), site_pks).annotate(
        newest=_latest(TelemetryReading, "timestamp"),
        online_since=Subquery(online_since.values("at")[:1]),
    )
    cutoff = _fresh_since(now)
    found: Found = {}
    for s in rows:
        quiet_since = max((t for t in (s.newest, s.online_since) if t is not None), default=None)
        if quiet_since is not None and quiet_since < cutoff:
            found[s.site_id] = {"last_reading_at": _ts(s.newest), "quiet_since": _ts(quiet_since)}
    return found
