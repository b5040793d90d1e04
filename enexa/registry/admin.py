"""Web admin of the asset registry: sites with their equipment and controllers, members."""

from django import forms
from django.contrib import admin

from .choices import ConnectorType, EquipmentKind
from .models import SPEC_FIELD_NAMES, Controller, Equipment, Site, SiteMembership
from .services import foreign_assets


class EquipmentForm(forms.ModelForm):
    """Connector types as checkboxes rather than raw JSON (an empty choice is [])."""

    connector_types = forms.MultipleChoiceField(
        choices=ConnectorType.choices, required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Equipment
        fields = [
            "code",
            "site",
            "kind",
            "parent",
            "name",
            "manufacturer",
            "model",
            "serial",
            *SPEC_FIELD_NAMES,
        ]


class BatterySystemParentMixin:
    """Offer only battery systems as the parent of a unit."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "parent":
            kwargs["queryset"] = Equipment.objects.filter(kind=EquipmentKind.BATTERY_SYSTEM)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class EquipmentInline(BatterySystemParentMixin, admin.StackedInline):
    model = Equipment
    form = EquipmentForm
    fk_name = "site"
    extra = 0
    show_change_link = True
    fieldsets = [
        (
            None,
            {"fields": [("code", "kind", "parent"), ("name", "manufacturer", "model", "serial")]},
        ),
        (
            "Specifications",
            {
                "fields": [
                    ("capacity_kwh", "max_power_kw", "max_charge_kw", "max_discharge_kw"),
                    ("soc_min_pct", "soc_max_pct", "voltage_v"),
                    ("connector_types", "connector_count", "phases"),
                ]
            },
        ),
    ]


class ControllerInline(admin.TabularInline):
    model = Controller
    extra = 0
    show_change_link = True
    fields = ["code", "serial", "model", "state", "firmware_version"]
    # The lifecycle state changes through provisioning and the security actions only.
    readonly_fields = ["state", "firmware_version"]


class MembershipInline(admin.TabularInline):
    model = SiteMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "timezone",
        "grid_connection_limit_kw",
        "equipment_count",
        "controller_count",
    ]
    list_filter = ["timezone"]
    search_fields = ["code", "name", "address"]
    inlines = [EquipmentInline, ControllerInline, MembershipInline]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["code", "name", "timezone", "grid_connection_limit_kw"]}),
        ("Location", {"fields": ["address", ("latitude", "longitude")]}),
        ("Record", {"fields": [("created_at", "updated_at")], "classes": ["collapse"]}),
    ]

    @admin.display(description="Equipment")
    def equipment_count(self, site: Site) -> int:
        return site.equipment.count()

    @admin.display(description="Controllers")
    def controller_count(self, site: Site) -> int:
        return site.controllers.count()


@admin.register(Equipment)
class EquipmentAdmin(BatterySystemParentMixin, admin.ModelAdmin):
    form = EquipmentForm
    list_display = ["code", "site", "kind", "parent", "name", "capacity_kwh", "max_power_kw"]
    list_filter = ["kind", "site", "manufacturer"]
    search_fields = ["code", "name", "model", "serial", "site__code", "site__name"]
    list_select_related = ["site", "parent"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["code", "site", "kind", "parent"]}),
        ("Product", {"fields": ["name", "manufacturer", "model", "serial"]}),
        (
            "Specifications",
            {
                "fields": SPEC_FIELD_NAMES,
                "description": "Only the specifications of the kind apply.",
            },
        ),
        ("Record", {"fields": [("created_at", "updated_at")], "classes": ["collapse"]}),
    ]


class ControllerForm(forms.ModelForm):
    """Assets must be equipment of the controller's own site."""

    class Meta:
        model = Controller
        fields = ["code", "serial", "site", "model", "assets"]

    def clean(self):
        data = super().clean()
        site, assets = data.get("site"), data.get("assets")
        if site is not None and assets:
            foreign = foreign_assets(site, assets)
            if foreign:
                self.add_error("assets", f"Not equipment of {site.code}: {', '.join(foreign)}.")
        return data


@admin.register(Controller)
class ControllerAdmin(admin.ModelAdmin):
    form = ControllerForm
    list_display = ["code", "serial", "site", "model", "state", "firmware_version", "updated_at"]
    list_filter = ["state", "model", "site"]
    search_fields = ["code", "serial", "model", "site__code", "site__name"]
    list_select_related = ["site"]
    filter_horizontal = ["assets"]
    readonly_fields = ["state", "firmware_version", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["code", "serial", "site", "model", "assets"]}),
        ("Lifecycle", {"fields": ["state", "firmware_version", ("created_at", "updated_at")]}),
    ]


@admin.register(SiteMembership)
class SiteMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "site", "role"]
    list_filter = ["role", "site"]
    search_fields = ["user__username", "user__email", "site__code", "site__name"]
    list_select_related = ["user", "site"]
    autocomplete_fields = ["user", "site"]
