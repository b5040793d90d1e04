"""What the dashboard shows, read in a fixed number of queries whatever the number of sites: the
fleet's rows, a site's overview, its chart series (from telemetry's maintained aggregates), and a
command issued from the dispatch form through the same service the API uses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Window
from django.db.models.fields.json import KT
from django.db.models.functions import RowNumber
from django.utils import timezone

from enexa.alerts.models import UNRESOLVED, Alert
from enexa.configs.limits import limits_for_site
from enexa.configs.models import ConfigState, ConfigVersion
from enexa.core.visibility import visible_sites
from enexa.dispatch import services as dispatch_services
from enexa.dispatch import tasks as dispatch_tasks
from enexa.dispatch.models import Command
from enexa.firmware.services import is_outdated, latest_for_each
from enexa.optimizer.services import plan_in_force
from enexa.registry.models import Controller, Site
from enexa.telemetry.models import (
    ChargerValue,
    Event,
    OutageReport,
    SiteStatus,
    SiteStatusTransition,
    TelemetryReading,
)
from enexa.telemetry.reports import is_online
from enexa.telemetry.services import slot_stats

from .choices import CHART_RANGES, ChartRange

# A charger counts as in use in these states, or while it draws power.
CHARGER_BUSY_STATUSES = {"preparing", "charging", "finishing"}
CHARGER_BUSY_KW = 0.1
# No chart asks for more points than this (the issue's bound; CHART_RANGES keep below it).
MAX_CHART_POINTS = 2000


# --- the fleet ------------------------------------------------------------------------------------


@dataclass
class FleetRow:
    """One site as the fleet page shows it."""

    code: str
    name: str
    online: bool
    since_at: datetime | None  # when it last went online or offline (else last seen)
    last_seen_at: datetime | None
    reading_at: datetime | None
    mode: str
    soc_pct: float | None
    battery_power_kw: float | None
    grid_import_kw: float | None
    grid_limit_kw: float
    chargers_in_use: int
    chargers_total: int
    alarms: list[str] = field(default_factory=list)
    alerts_open: int | None = None  # None: no alerts app installed
    drift: list[str] = field(default_factory=list)  # "CTRL001 v3 (applied v2)"
    outdated: list[str] = field(default_factory=list)  # "CTRL001 1.0.0 -> 1.1.0"

    @property
    def grid_use_pct(self) -> float | None:
        if self.grid_import_kw is None or not self.grid_limit_kw:
            return None
        return 100.0 * self.grid_import_kw / self.grid_limit_kw

    @property
    def problems(self) -> int:
        """How many things want a look: offline, alarms, alerts, drift, outdated firmware."""
        return (
            (not self.online)
            + len(self.alarms)
            + (self.alerts_open or 0)
            + len(self.drift)
            + len(self.outdated)
        )


def _sites_with_latest(sites: QuerySet[Site]) -> QuerySet[Site]:
    """The sites with their status row, the id of their newest reading and the time of their
    newest online/offline transition: one query (correlated subqueries on indexed columns)."""
    newest_reading = (
        TelemetryReading.objects.filter(site=OuterRef("pk")).order_by("-timestamp").values("pk")
    )
    newest_transition = (
        SiteStatusTransition.objects.filter(site=OuterRef("pk")).order_by("-at").values("at")
    )
    return sites.select_related("status").annotate(
        newest_reading_pk=Subquery(newest_reading[:1]),
        changed_at=Subquery(newest_transition[:1]),
    )


def _status_of(site: Site) -> SiteStatus | None:
    try:
        return site.status
    except SiteStatus.DoesNotExist:
        return None


# Which sites a helper reads for: their primary keys, or a query of them (`.values("pk")`),
# which the database takes as a subquery instead of a list of hundreds of parameters.
SitePks = Iterable[int] | QuerySet


def open_alarms_by_site(site_pks: SitePks) -> dict[int, list[str]]:
    """Each site's open ChargePost alarms: per ChargePost, the newest `alarm` event still
    reporting alarm bits set. One query (a window over the sites' alarm events)."""
    chargepost = KT("data__chargepost")
    newest = (
        Event.objects.filter(site_id__in=site_pks, kind="alarm")
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("site_id"), chargepost],
                order_by=F("timestamp").desc(),
            )
        )
        .filter(rank=1)
        .values_list("site_id", "data")
    )
    alarms: dict[int, list[str]] = {}
    for site_pk, data in newest:
        bits = data.get("alarm_bits") if isinstance(data, dict) else None
        if not isinstance(bits, int) or bits == 0:
            continue
        names = [str(n) for n in data.get("raised") or []] or [f"bits {bits:#06x}"]
        alarms.setdefault(site_pk, []).append(
            f"ChargePost {data.get('chargepost', '?')}: {', '.join(names)}"
        )
    return alarms


def _unresolved_alerts(site_pks: SitePks) -> QuerySet:
    """The sites' unresolved (open or acknowledged) alerts."""
    return Alert.objects.filter(UNRESOLVED, site_id__in=site_pks)


def open_alert_counts(site_pks: SitePks) -> dict[int, int]:
    """Unresolved alerts per site (one query)."""
    counts = _unresolved_alerts(site_pks).order_by().values("site_id").annotate(count=Count("pk"))
    return {row["site_id"]: row["count"] for row in counts}


def site_alerts(site: Site, *, limit: int = 20) -> list:
    """The site's unresolved alerts, newest first."""
    return list(_unresolved_alerts([site.pk]).order_by("-opened_at")[:limit])


def config_drift_by_site(site_pks: SitePks) -> dict[int, list[str]]:
    """Controllers whose gateway has not applied the current configuration version."""
    drift: dict[int, list[str]] = {}
    states = ConfigState.objects.filter(controller__site_id__in=site_pks).values_list(
        "controller__site_id", "controller__code", "version", "applied_version"
    )
    for site_pk, code, version, applied in states.order_by("controller__code"):
        if applied != version:
            shown = f"v{applied}" if applied is not None else "none"
            drift.setdefault(site_pk, []).append(f"{code} v{version} (applied {shown})")
    return drift


def outdated_firmware_by_site(controllers: list[Controller]) -> dict[int, list[str]]:
    """Controllers offered a newer firmware release than they run (enexa.firmware's rules)."""
    latest = latest_for_each(controllers)
    outdated: dict[int, list[str]] = {}
    for controller in controllers:
        release = latest[controller.pk]
        if release is not None and is_outdated(controller, release):
            running = controller.firmware_version or "unknown"
            outdated.setdefault(controller.site_id, []).append(
                f"{controller.code} {running} → {release.version}"
            )
    return outdated


def fleet_rows(user: Any, *, now: datetime | None = None) -> list[FleetRow]:
    """Every site `user` may see, with its state: a fixed number of queries, one per kind of
    data (sites, readings, chargers, alarms, configuration, controllers, firmware)."""
    now = now or timezone.now()
    scope = visible_sites(user)
    sites = list(_sites_with_latest(scope).order_by("code"))
    # The other reads narrow by subqueries of the same scope, not by lists of ids.
    site_pks = scope.values("pk")
    newest_readings = _sites_with_latest(scope).values("newest_reading_pk")
    readings = {
        r["pk"]: r
        for r in TelemetryReading.objects.filter(pk__in=newest_readings).values(
            "pk", "timestamp", "battery_soc_pct", "battery_power_kw", "grid_import_kw"
        )
    }
    chargers: dict[int, list[tuple[str, float | None]]] = {}
    for reading_pk, status, power_kw in ChargerValue.objects.filter(
        reading_id__in=newest_readings
    ).values_list("reading_id", "status", "power_kw"):
        chargers.setdefault(reading_pk, []).append((status, power_kw))
    alarms = open_alarms_by_site(site_pks)
    alerts = open_alert_counts(site_pks)
    drift = config_drift_by_site(site_pks)
    controllers = list(Controller.objects.filter(site_id__in=site_pks).order_by("code"))
    outdated = outdated_firmware_by_site(controllers)
    rows = []
    for site in sites:
        status = _status_of(site)
        reading = readings.get(site.newest_reading_pk) or {}
        site_chargers = chargers.get(site.newest_reading_pk, [])
        rows.append(
            FleetRow(
                code=site.code,
                name=site.name,
                online=is_online(status, now=now),
                since_at=site.changed_at or (status.last_seen_at if status else None),
                last_seen_at=status.last_seen_at if status else None,
                reading_at=reading.get("timestamp"),
                mode=(status.mode if status else "") or "",
                soc_pct=reading.get("battery_soc_pct"),
                battery_power_kw=reading.get("battery_power_kw"),
                grid_import_kw=reading.get("grid_import_kw"),
                grid_limit_kw=site.grid_connection_limit_kw,
                chargers_in_use=sum(
                    1
                    for s, kw in site_chargers
                    if s in CHARGER_BUSY_STATUSES or (kw or 0) > CHARGER_BUSY_KW
                ),
                chargers_total=len(site_chargers),
                alarms=alarms.get(site.pk, []),
                alerts_open=None if alerts is None else alerts.get(site.pk, 0),
                drift=drift.get(site.pk, []),
                outdated=outdated.get(site.pk, []),
            )
        )
    return rows


# --- one site -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerView:
    """A site's controller as the site page shows it: configuration and firmware."""

    code: str
    state: str
    model: str
    config_version: int | None
    applied_version: int | None
    firmware_version: str
    latest_firmware: str | None  # the newer release offered, if any

    @property
    def drift(self) -> bool:
        return self.config_version is not None and self.applied_version != self.config_version


def site_controllers(site: Site) -> list[ControllerView]:
    """The site's controllers with their configuration versions and firmware."""
    controllers = list(
        Controller.objects.filter(site=site).select_related("config_state").order_by("code")
    )
    latest = latest_for_each(controllers)
    views = []
    for c in controllers:
        state = getattr(c, "config_state", None)
        release = latest[c.pk]
        views.append(
            ControllerView(
                code=c.code,
                state=c.state,
                model=c.model,
                config_version=state.version if state else None,
                applied_version=state.applied_version if state else None,
                firmware_version=c.firmware_version,
                latest_firmware=release.version
                if release is not None and is_outdated(c, release)
                else None,
            )
        )
    return views


def site_chargers(site: Site) -> dict[str, float | None]:
    """The chargers a command may name, by code, with their maximum power (kW, None when not
    known): those in the limits of the site's current configuration versions, the list the
    gateway checks `charger_id` against (built from the registry's equipment), or the
    registry's own when no controller has a configuration yet. One query (two then)."""
    current = ConfigVersion.objects.filter(
        controller__site=site, number=F("controller__config_state__version")
    ).values_list("limits", flat=True)
    chargers: dict[str, float | None] = {}
    for limits in list(current) or [limits_for_site(site)]:
        for code, spec in ((limits or {}).get("chargers") or {}).items():
            chargers[code] = spec.get("max_power_kw") if isinstance(spec, dict) else None
    return dict(sorted(chargers.items()))


def live_state(site: Site, *, now: datetime | None = None) -> dict[str, Any]:
    """What the site page's live panel shows: status, the newest reading with its chargers, the
    open alarms, and the latest commands."""
    now = now or timezone.now()
    status = SiteStatus.objects.filter(site=site).first()
    reading = (
        TelemetryReading.objects.filter(site=site)
        .order_by("-timestamp")
        .values(
            "pk",
            "timestamp",
            "battery_soc_pct",
            "battery_power_kw",
            "grid_import_kw",
            "grid_export_kw",
            "chargers_power_kw",
        )
        .first()
    )
    chargers = (
        list(
            ChargerValue.objects.filter(reading_id=reading["pk"])
            .order_by("charger_code")
            .values("charger_code", "status", "power_kw")
        )
        if reading
        else []
    )
    changed_at = (
        SiteStatusTransition.objects.filter(site=site)
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )
    return {
        "online": is_online(status, now=now),
        "since_at": changed_at or (status.last_seen_at if status else None),
        "status": status,
        "reading": reading,
        "chargers": chargers,
        "alarms": open_alarms_by_site([site.pk]).get(site.pk, []),
        "commands": list(Command.objects.filter(site=site).order_by("-issued_at")[:10]),
    }


def site_timeline(site: Site, *, limit: int = 50) -> list[Event]:
    """The site's newest events (alarms, mode changes, commands, outages' log lines)."""
    return list(Event.objects.filter(site=site).order_by("-timestamp")[:limit])


def site_outages(site: Site, *, limit: int = 10) -> list[OutageReport]:
    """The site's newest outages with their reconciliation reports."""
    return list(OutageReport.objects.filter(site=site).order_by("-offline_at")[:limit])


# --- charts ---------------------------------------------------------------------------------------

# The series each chart point carries, in this order after its time (seconds since the epoch).
CHART_SERIES = (
    "battery_soc_pct",
    "battery_power_kw",
    "grid_import_kw",
    "grid_import_kw_max",
    "chargers_power_kw",
)


def bucketed_series(
    site_pk: int, start: datetime, end: datetime, bucket_s: int
) -> list[tuple[float, ...]]:
    """(bucket start as epoch seconds, avg SOC, avg battery power, avg and peak grid import,
    avg charger power) per bucket of `bucket_s` overlapping [start, end), read from
    telemetry's maintained aggregates (enexa.telemetry.queries.slot_stats: one query, and the
    range's minutes not yet refreshed by the worker refreshed first)."""
    return [
        (
            slot.start.timestamp(),
            slot.avg("battery_soc_pct"),
            slot.avg("battery_power_kw"),
            slot.avg("grid_import_kw"),
            slot.max("grid_import_kw"),
            slot.avg("chargers_power_kw"),
        )
        for slot in slot_stats(site_pk, start, end, bucket_s)
    ]


def chart_data(site: Site, chart_range: ChartRange, *, now: datetime | None = None) -> dict:
    """The site's chart series over the range, columnar as uPlot takes them, with the grid
    limit and (when the optimizer exists) the plan in force."""
    now = now or timezone.now()
    span_s, bucket_s = CHART_RANGES[chart_range]
    start = now - timedelta(seconds=span_s)
    rows = bucketed_series(site.pk, start, now, bucket_s)[-MAX_CHART_POINTS:]
    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(CHART_SERIES) + 1)
    body: dict[str, Any] = {
        "site_id": site.code,
        "range": chart_range,
        "bucket_s": bucket_s,
        "from": start.timestamp(),
        "to": now.timestamp(),
        "grid_limit_kw": site.grid_connection_limit_kw,
        "time": [int(t) for t in columns[0]],
    }
    for name, values in zip(CHART_SERIES, columns[1:], strict=True):
        body[name] = [None if v is None else round(v, 3) for v in values]
    plan = plan_series(site)
    if plan is not None:
        body["plan"] = plan
    return body


# --- the plan in force (enexa.optimizer) ----------------------------------------------------------


def plan_series(site: Site) -> dict | None:
    """The plan in force as chart series ({"time", "battery_power_kw", "soc_pct",
    "grid_import_kw"}, one point per slot at its start), or None when the site follows none."""
    plan = plan_in_force(site)
    if plan is None:
        return None
    return {
        "time": [int(datetime.fromisoformat(s["start"]).timestamp()) for s in plan.slots],
        **{
            key: [s[key] for s in plan.slots]
            for key in ("battery_power_kw", "soc_pct", "grid_import_kw")
        },
    }


# --- dispatch -------------------------------------------------------------------------------------


def dispatch_from_form(
    site: Site, *, command: str, params: dict, created_by: str
) -> tuple[Command, bool]:
    """Issue a command as `POST /v1/sites/{site_id}/commands` does (the same service, the same
    validation and errors), delivered by the worker once the transaction commits."""
    issued, created = dispatch_services.issue_command(
        site=site, command=command, params=params, created_by=created_by
    )
    if created:
        dispatch_tasks.deliver_command.delay_on_commit(issued.command_id)
    return issued, created
