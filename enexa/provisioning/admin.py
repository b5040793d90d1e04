"""Admin: enrollment secrets (shown once), API keys, and controller lifecycle actions."""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.utils import timezone

from enexa.core.errors import ConflictError
from enexa.registry.choices import ControllerState

from . import services
from .models import ApiKey, ControllerAccess, EnrollmentToken, ProvisionedController


@admin.register(EnrollmentToken)
class EnrollmentTokenAdmin(admin.ModelAdmin):
    list_display = ["__str__", "site", "uses_left", "expires_at", "created_by", "created_at"]
    list_filter = ["site"]
    fields = ["site", "uses_left", "expires_at", "lookup", "created_by", "created_at"]
    readonly_fields = ["lookup", "created_by", "created_at"]

    def get_changeform_initial_data(self, request):
        return {
            "expires_at": timezone.now() + timedelta(seconds=settings.ENEXA_ENROLLMENT_TTL_S),
            "uses_left": 1,
        }

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        ttl_s = max(1, int((obj.expires_at - timezone.now()).total_seconds()))
        token, secret = services.create_enrollment_token(
            obj.site, obj.uses_left, ttl_s, created_by=request.user
        )
        for field in ("pk", "lookup", "secret_hash", "expires_at", "created_at", "created_by"):
            setattr(obj, field, getattr(token, field))
        messages.warning(request, f"Enrollment secret for {obj.site.code} (shown once): {secret}")
        return None


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "controller",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["controller__site", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["lookup", "controller__code", "controller__serial"]
    readonly_fields = [
        "controller",
        "lookup",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    exclude = ["secret_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are issued by registration or rotation, so the secret is shown once

    @admin.action(description="Revoke the selected keys now")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).")


class ControllerAccessInline(admin.StackedInline):
    model = ControllerAccess
    fields = ["ip_allowlist", "activated_at", "activation_detail"]
    readonly_fields = ["activated_at", "activation_detail"]
    can_delete = False


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["lookup", "created_at", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ProvisionedController)
class ProvisionedControllerAdmin(admin.ModelAdmin):
    list_display = ["code", "serial", "site", "state", "updated_at"]
    list_filter = ["state", "site"]
    search_fields = ["code", "serial"]
    fields = ["code", "serial", "site", "state"]
    readonly_fields = fields
    inlines = [ControllerAccessInline, ApiKeyInline]
    actions = ["suspend", "resume", "decommission", "reset", "rotate_key", "revoke_keys"]

    def has_add_permission(self, request):
        return False

    def _move(self, request, queryset, state):
        for controller in queryset:
            try:
                services.set_controller_state(controller, state)
            except ConflictError as exc:
                self.message_user(request, f"{controller.code}: {exc.detail}", messages.ERROR)
            else:
                self.message_user(request, f"{controller.code} is now {state}.")

    @admin.action(description="Suspend (its key stops at once)")
    def suspend(self, request, queryset):
        self._move(request, queryset, ControllerState.SUSPENDED)

    @admin.action(description="Resume a suspended controller")
    def resume(self, request, queryset):
        self._move(request, queryset, ControllerState.ACTIVE)

    @admin.action(description="Decommission (keys revoked)")
    def decommission(self, request, queryset):
        self._move(request, queryset, ControllerState.DECOMMISSIONED)

    @admin.action(description="Reset, so the serial may register again (keys revoked)")
    def reset(self, request, queryset):
        self._move(request, queryset, ControllerState.PENDING)

    @admin.action(description="Rotate the API key (new key shown once; old one in grace)")
    def rotate_key(self, request, queryset):
        for controller in queryset:
            key, _ = services.rotate_api_key(controller)
            self.message_user(
                request, f"New API key of {controller.code} (shown once): {key}", messages.WARNING
            )

    @admin.action(description="Revoke every API key now")
    def revoke_keys(self, request, queryset):
        for controller in queryset:
            count = services.revoke_api_keys(controller)
            self.message_user(request, f"{controller.code}: revoked {count} key(s).")
