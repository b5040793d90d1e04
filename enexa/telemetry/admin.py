"""Admin of enexa.telemetry: status, transitions, events and outage reports (read mostly)."""

from datetime import datetime, timedelta

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .availability import site_availability
from .models import Event, OutageReport, SiteStatus, SiteStatusTransition
from .periods import PeriodRange, zone_name


def _pct_cell(pct: float | None) -> str:
    return "–" if pct is None else f"{pct:.1f} %"


def _local_label(start: str, rng: PeriodRange) -> str:
    """A period's local date (a day) or year and month (a month) in the range's zone."""
    local = datetime.fromisoformat(start).astimezone(rng.zone)
    return f"{local:%Y-%m-%d}" if rng.period == "day" else f"{local:%Y-%m}"


def _availability_table(status: SiteStatus, period: str, span: timedelta) -> str:
    """The site's availability per day or month of its own time zone, newest first."""
    now = timezone.now()
    rng = PeriodRange(now - span, now, period, zone_name(status.site.timezone))
    rows = site_availability(status.site_id, rng, now=now)
    return format_html(
        "<table><caption>{}s in {}</caption>"
        "<tr><th>{}</th><th>online</th><th>chargers in service</th></tr>{}</table>",
        period.capitalize(),
        rng.tz,
        period,
        format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _local_label(r["start"], rng),
                    _pct_cell(r["online_pct"]),
                    _pct_cell(r["chargers_available_pct"]),
                )
                for r in reversed(rows)
            ),
        ),
    )


@admin.register(SiteStatus)
class SiteStatusAdmin(admin.ModelAdmin):
    list_display = ("site", "online", "last_seen_at", "mode", "config_version", "firmware_version")
    readonly_fields = ("availability_by_day", "availability_by_month")

    @admin.display(description="Availability by local day, last 31 days")
    def availability_by_day(self, status: SiteStatus) -> str:
        return _availability_table(status, "day", timedelta(days=31))

    @admin.display(description="Availability by local month, last 12 months")
    def availability_by_month(self, status: SiteStatus) -> str:
        return _availability_table(status, "month", timedelta(days=365))


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
