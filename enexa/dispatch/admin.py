"""Admin of dispatched commands: read-only, searchable, filterable."""

from django.contrib import admin

from .models import Command, DeliveryAttempt


class DeliveryAttemptInline(admin.TabularInline):
    """Each POST of the command to Amperio, read-only."""

    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ["attempted_at", "outcome", "http_status", "error"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    list_display = [
        "command_id",
        "site",
        "command",
        "status",
        "issued_at",
        "valid_until",
        "delivery_attempts",
    ]
    list_filter = ["status", "command", "site"]
    search_fields = ["command_id", "site__code", "detail", "request_id"]
    date_hierarchy = "issued_at"
    readonly_fields = [f.name for f in Command._meta.fields]
    inlines = [DeliveryAttemptInline]

    def has_add_permission(self, request):
        return False
