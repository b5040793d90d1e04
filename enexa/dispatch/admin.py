"""Admin of dispatched commands: read-only, searchable, filterable."""

from django.contrib import admin

from .models import Command


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
    search_fields = ["command_id", "site__code", "detail"]
    date_hierarchy = "issued_at"
    readonly_fields = [f.name for f in Command._meta.fields]

    def has_add_permission(self, request):
        return False
