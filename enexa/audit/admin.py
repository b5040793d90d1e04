"""Admin: staff browse and filter the audit log (read-only)."""

from django.contrib import admin

from .models import AuditEntry


class StatusClassFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("2xx", "Success (2xx)"), ("4xx", "Refused (4xx)"), ("5xx", "Error (5xx)")]

    def queryset(self, request, queryset):
        if self.value() in {"2xx", "4xx", "5xx"}:
            low = int(self.value()[0]) * 100
            return queryset.filter(status_code__gte=low, status_code__lt=low + 100)
        return queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "principal",
        "source_ip",
        "method",
        "path",
        "status_code",
        "duration_ms",
    ]
    list_filter = [StatusClassFilter, "method", "status_code", "created_at"]
    search_fields = ["principal", "path", "source_ip"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in AuditEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
