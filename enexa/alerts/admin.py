"""Admin of alerts: searchable and filterable; staff acknowledge from the list."""

from django.contrib import admin

from . import services
from .models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "rule",
        "site",
        "subject",
        "severity",
        "state",
        "opened_at",
        "resolved_at",
    ]
    list_filter = ["state", "severity", "rule", "site"]
    search_fields = ["code", "rule", "site__code", "subject"]
    date_hierarchy = "opened_at"
    readonly_fields = [f.name for f in Alert._meta.fields]
    actions = ["acknowledge"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge the selected alerts")
    def acknowledge(self, request, queryset):
        by = f"user:{request.user.get_username()}"
        done = 0
        for alert in queryset.exclude(state="resolved"):
            services.acknowledge(alert, by=by)
            done += 1
        self.message_user(request, f"{done} alert(s) acknowledged.")
