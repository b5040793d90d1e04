"""Admin of webhook endpoints (never their secret) and their delivery log."""

from django.contrib import admin, messages

from . import services
from .models import Webhook, WebhookAttempt, WebhookDelivery


class WebhookAttemptInline(admin.TabularInline):
    """Each attempt of a delivery, read-only."""

    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ["attempted_at", "status_code", "error", "duration_ms"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["code", "url", "owner", "enabled", "failing_since", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["code", "url", "owner__username"]
    # The secret is left out: shown once, at creation through the API.
    fields = ["code", "owner", "url", "events", "sites", "enabled", "disabled_reason"]
    # Read-only: enabling again goes through the API, which also resolves the alert.
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["code", "webhook", "event_type", "site", "status", "attempts", "created_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["code", "webhook__code", "site__code"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    inlines = [WebhookAttemptInline]
    actions = ["retry_dead_letters"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry selected dead letters", permissions=["change"])
    def retry_dead_letters(self, request, queryset):
        # The API's bulk retry: each dead letter one more attempt on the worker, others left.
        done = services.retry_dead_letters(queryset, user=request.user)
        self.message_user(
            request,
            f"{done.retried} dead letter(s) queued for one more attempt; "
            f"{done.skipped} other delivery(ies) skipped (not dead letters).",
            messages.SUCCESS if done.retried else messages.WARNING,
        )
