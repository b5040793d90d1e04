"""Admin of enexa.telemetry: status, transitions, events and outage reports (read mostly)."""

from django.contrib import admin

from .models import Event, OutageReport, SiteStatus, SiteStatusTransition


@admin.register(SiteStatus)
class SiteStatusAdmin(admin.ModelAdmin):
    list_display = ("site", "online", "last_seen_at", "mode", "config_version", "firmware_version")


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
