"""Admin of firmware: releases (register, publish, yank, target sites) with their rollout,
reports read-only, and the controllers that run outdated firmware."""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db import models

from enexa.core.principals import principal_label

from . import services
from .models import ControllerFirmware, FirmwareRelease, FirmwareReport


@admin.register(FirmwareRelease)
class FirmwareReleaseAdmin(admin.ModelAdmin):
    list_display = [
        "version",
        "controller_model",
        "channel",
        "published",
        "yanked",
        "targets",
        "rollout",
        "created_at",
    ]
    list_filter = ["controller_model", "channel", "published", "yanked"]
    search_fields = ["version", "notes"]
    filter_horizontal = ["target_sites"]
    readonly_fields = ["created_at", "created_by", "updated_at", "rollout"]
    actions = ["publish", "yank"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        # The targets column and each row's rollout read the target sites.
        return super().get_queryset(request).prefetch_related("target_sites")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        return [*self.readonly_fields, *FirmwareRelease.IMMUTABLE_FIELDS]

    @admin.display(description="target sites")
    def targets(self, obj):
        return ", ".join(s.code for s in obj.target_sites.all()) or "all"

    @admin.display(description="rollout")
    def rollout(self, obj):
        if obj.pk is None:
            return "-"
        counts = services.rollout_status(obj)["counts"]
        return ", ".join(f"{state}: {n}" for state, n in counts.items() if n) or "no controllers"

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = principal_label(request.user)
        super().save_model(request, obj, form, change)

    @admin.action(description="Publish the selected releases")
    def publish(self, request, queryset):
        queryset.update(published=True)

    @admin.action(description="Yank the selected releases (never offered again)")
    def yank(self, request, queryset):
        queryset.update(yanked=True)


@admin.register(FirmwareReport)
class FirmwareReportAdmin(admin.ModelAdmin):
    list_display = ["controller", "current_version", "status", "target_version", "reported_at"]
    list_filter = ["status", "controller__site"]
    search_fields = ["controller__code", "current_version", "target_version", "error"]
    date_hierarchy = "reported_at"
    readonly_fields = [f.name for f in FirmwareReport._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OutdatedFilter(admin.SimpleListFilter):
    title = "firmware"
    parameter_name = "outdated"

    def lookups(self, request, model_admin):
        return [("yes", "Outdated")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            codes = [row["id"] for row in services.outdated_controllers()]
            return queryset.filter(code__in=codes)
        return queryset


class ControllerFirmwareChangeList(ChangeList):
    """Reads the latest release and the last report of a page's controllers together, in a
    few queries, rather than once per row."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = controllers = list(self.result_list)
        latest = services.latest_for_each(controllers)
        reports = services.last_reports(controllers)
        for controller in controllers:
            controller.latest_release = latest[controller.pk]
            controller.last_firmware_report = reports.get(controller.pk)


@admin.register(ControllerFirmware)
class ControllerFirmwareAdmin(admin.ModelAdmin):
    """Which firmware each controller runs, and whether a newer release is offered to it."""

    list_display = [
        "code",
        "site",
        "model",
        "firmware_version",
        "latest_offered",
        "up_to_date",
        "last_report",
    ]
    list_filter = [OutdatedFilter, "model", "site"]
    search_fields = ["code", "serial", "site__code"]
    list_select_related = ["site"]
    fields = ["code", "site", "model", "firmware_version"]
    readonly_fields = fields

    def get_changelist(self, request, **kwargs):
        return ControllerFirmwareChangeList

    @admin.display(description="latest offered")
    def latest_offered(self, obj):
        release = obj.latest_release
        return release.version if release else "-"

    @admin.display(boolean=True, description="up to date")
    def up_to_date(self, obj):
        return not services.is_outdated(obj, obj.latest_release)

    @admin.display(description="last report")
    def last_report(self, obj):
        report = obj.last_firmware_report
        return (
            f"{report.status} {report.current_version} ({report.reported_at:%Y-%m-%d %H:%M})"
            if report
            else "-"
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
