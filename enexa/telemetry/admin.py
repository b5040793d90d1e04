"""Admin of enexa.telemetry: status, transitions, events and outage reports (read mostly)."""

from datetime import timedelta

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .availability import site_availability
from .energy import PeriodRange
from .models import Event, OutageReport, SiteStatus, SiteStatusTransition


def _pct_cell(pct: float | None) -> str:
    return "–" if pct is None else f"{pct:.1f} %"


def _availability_table(site_pk: int, period: str, span: timedelta) -> str:
    now = timezone.now()
    rows = site_availability(site_pk, PeriodRange(now - span, now, period), now=now)
    return format_html(
        "<table><tr><th>{}</th><th>online</th><th>chargers in service</th></tr>{}</table>",
        period,
        format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (r["start"], _pct_cell(r["online_pct"]), _pct_cell(r["chargers_available_pct"]))
                for r in reversed(rows)
            ),
        ),
    )


@admin.register(SiteStatus)
class SiteStatusAdmin(admin.ModelAdmin):
    list_display = ("site", "online", "last_seen_at", "mode", "config_version", "firmware_version")
    readonly_fields = ("availability_by_day", "availability_by_month")

    @admin.display(description="Availability, last 31 days (UTC)")
    def availability_by_day(self, status: SiteStatus) -> str:
        return _availability_table(status.site_id, "day", timedelta(days=31))

    @admin.display(description="Availability, last 12 months (UTC)")
    def availability_by_month(self, status: SiteStatus) -> str:
        return _availability_table(status.site_id, "month", timedelta(days=365))


@admin.register(SiteStatusTransition)
class SiteStatusTransitionAdmin(admin.ModelAdmin):
    list_display = ("site", "online", "at", "reason")
    list_filter = ("online", "reason")


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("site", "timestamp", "kind", "severity", "message")
    list_filter = ("kind", "severity")


@admin.register(OutageReport)
class OutageReportAdmin(admin.ModelAdmin):
    list_display = (
        "site",
        "silent_since",
        "online_at",
        "readings_expected",
        "readings_received",
        "readings_backfilled",
    )
