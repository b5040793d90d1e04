"""Admin of configuration: site settings and controller overrides editable (through the
services, so each change is validated and versioned), versions and drift read-only."""

from django import forms
from django.contrib import admin

from enexa.core.errors import DomainError
from enexa.core.principals import principal_label

from . import services
from .models import ConfigState, ConfigVersion, ControllerConfig, SiteConfig


class ConfigDocumentForm(forms.ModelForm):
    """A configuration level's document, validated by the service before it is saved."""

    owner = doc = ""  # the owner field (site or controller) and the document field

    def validate(self, owner, document: dict) -> dict:
        raise NotImplementedError

    def clean(self):
        data = super().clean()
        if data.get(self.owner) is not None and self.doc in data:
            for field, messages in self.validate(data[self.owner], data[self.doc] or {}).items():
                self.add_error(self.doc, [f"{field}: {m}" for m in messages])
        return data


class ConfigDocumentAdmin(admin.ModelAdmin):
    """Saves through the service, so an admin edit is validated and versioned like the API's."""

    form: type[ConfigDocumentForm]

    def update(self, owner, document: dict, by: str) -> None:
        raise NotImplementedError

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, self.form.owner] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        owner = getattr(obj, self.form.owner)
        try:
            self.update(owner, getattr(obj, self.form.doc) or {}, principal_label(request.user))
        except DomainError as exc:  # validated in the form; only a race lands here
            self.message_user(request, f"Not saved: {exc.detail} {exc.errors}", level="error")
        # The service saved (or created) the row: the admin goes on with the stored one.
        stored = type(obj).objects.filter(**{self.form.owner: owner}).first()
        if stored is not None:
            obj.pk = stored.pk
            obj.refresh_from_db()


class SiteConfigForm(ConfigDocumentForm):
    owner, doc = "site", "settings"

    class Meta:
        model = SiteConfig
        fields = ["site", "settings"]

    def validate(self, owner, document):
        return services.validate_site_config(owner, document)


@admin.register(SiteConfig)
class SiteConfigAdmin(ConfigDocumentAdmin):
    form = SiteConfigForm
    list_display = ["site", "revision", "updated_at", "updated_by"]
    search_fields = ["site__code", "site__name"]
    readonly_fields = ["revision", "updated_at", "updated_by"]

    def update(self, owner, document, by):
        services.update_site_config(owner, document, if_match=None, by=by, replace=True)


class ControllerConfigForm(ConfigDocumentForm):
    owner, doc = "controller", "overrides"

    class Meta:
        model = ControllerConfig
        fields = ["controller", "overrides"]

    def validate(self, owner, document):
        return services.validate_controller_config(owner, document)


@admin.register(ControllerConfig)
class ControllerConfigAdmin(ConfigDocumentAdmin):
    form = ControllerConfigForm
    list_display = ["controller", "updated_at", "updated_by"]
    search_fields = ["controller__code", "controller__site__code"]
    readonly_fields = ["updated_at", "updated_by"]

    def update(self, owner, document, by):
        services.update_controller_config(owner, document, if_match=None, by=by, replace=True)


class DriftFilter(admin.SimpleListFilter):
    title = "applied"
    parameter_name = "drift"

    def lookups(self, request, model_admin):
        return [("yes", "Not applied (drift)"), ("no", "Applied")]

    def queryset(self, request, queryset):
        from django.db.models import F, Q

        drifting = Q(applied_version__isnull=True) | ~Q(applied_version=F("version"))
        if self.value() == "yes":
            return queryset.filter(drifting)
        if self.value() == "no":
            return queryset.exclude(drifting)
        return queryset


@admin.register(ConfigState)
class ConfigStateAdmin(admin.ModelAdmin):
    """Per controller: the current version against the one the gateway reports applied."""

    list_display = [
        "controller",
        "site",
        "version",
        "applied_version",
        "in_sync",
        "updated_at",
        "applied_at",
    ]
    list_filter = [DriftFilter, "controller__site"]
    search_fields = ["controller__code", "controller__site__code"]
    list_select_related = ["controller__site"]
    readonly_fields = ["controller", "version", "updated_at", "applied_version", "applied_at"]

    @admin.display(description="site")
    def site(self, obj):
        return obj.controller.site.code

    @admin.display(boolean=True, description="applied")
    def in_sync(self, obj):
        return not obj.drift

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ConfigVersion)
class ConfigVersionAdmin(admin.ModelAdmin):
    """The history: read-only; a rollback is a new version (API `.../restore`)."""

    list_display = [
        "controller",
        "number",
        "is_current",
        "is_applied",
        "created_at",
        "created_by",
        "reason",
    ]
    list_filter = ["controller__site", "controller"]
    search_fields = ["controller__code", "reason", "created_by"]
    list_select_related = ["controller__config_state"]
    readonly_fields = [f.name for f in ConfigVersion._meta.fields]

    @admin.display(boolean=True, description="current")
    def is_current(self, obj):
        state = getattr(obj.controller, "config_state", None)
        return state is not None and state.version == obj.number

    @admin.display(boolean=True, description="applied by the gateway")
    def is_applied(self, obj):
        state = getattr(obj.controller, "config_state", None)
        return state is not None and state.applied_version == obj.number

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
