"""Enexa's master data: sites, site members, controllers and equipment with specifications."""

import functools
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from shared.telemetry import MAX_ABS_POWER_KW

from .choices import ConnectorType, ControllerState, EquipmentKind, MemberRole

code_validator = RegexValidator(
    r"^[A-Z0-9][A-Z0-9_-]{1,31}$",
    "Use 2-32 upper-case letters, digits, '-' or '_' (e.g. SITE001).",
)
positive = MinValueValidator(0.0, "Must not be negative.")
percent = [MinValueValidator(0.0, "Must be 0-100."), MaxValueValidator(100.0, "Must be 0-100.")]


# Upper bounds of the registry's quantities. Beyond them a value is a unit mistake (W for kW)
# or hostile, and what is derived from it (the plausibility check of telemetry, configuration
# limits, dispatch limits) would bound nothing. Powers share telemetry's bound: a rating above
# what a reading may carry makes no sense. Checked in clean() (a policy, not a schema change).
UPPER_BOUNDS = {
    "grid_connection_limit_kw": MAX_ABS_POWER_KW,
    "max_power_kw": MAX_ABS_POWER_KW,
    "max_charge_kw": MAX_ABS_POWER_KW,
    "max_discharge_kw": MAX_ABS_POWER_KW,
    "capacity_kwh": 100_000.0,
    "voltage_v": 100_000.0,
    "connector_count": 64,
}


def upper_bound_errors(instance: models.Model) -> dict[str, list[str]]:
    """Field errors for the values of `instance` above their UPPER_BOUNDS."""
    errors: dict[str, list[str]] = {}
    for name, bound in UPPER_BOUNDS.items():
        value = getattr(instance, name, None)
        if isinstance(value, int | float) and value > bound:
            errors[name] = [f"Must be at most {bound:g}."]
    return errors


@functools.cache
def timezone_names() -> frozenset[str]:
    """The IANA time zone names this installation knows (read once: listing them walks the
    zone files)."""
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in timezone_names():
        raise ValidationError(f"'{value}' is not an IANA time zone (e.g. Europe/Berlin).")


class Site(models.Model):
    """A place with a grid connection where ChargePost equipment runs."""

    code = models.CharField(max_length=32, unique=True, validators=[code_validator])
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    address = models.CharField(max_length=300, blank=True)
    latitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-90), MaxValueValidator(90)]
    )
    longitude = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-180), MaxValueValidator(180)]
    )
    grid_connection_limit_kw = models.FloatField(
        validators=[MinValueValidator(0.1, "Must be greater than 0.")]
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="SiteMembership", related_name="sites", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    def clean(self) -> None:
        errors = upper_bound_errors(self)
        if errors:
            raise ValidationError(errors)


class SiteMembership(models.Model):
    """A user's access to a site: operators see (and may act on) only their sites."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=MemberRole.choices, default=MemberRole.OPERATOR)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "site"], name="unique_site_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.site.code} ({self.role})"


class Equipment(models.Model):
    """A piece of site equipment (battery system or unit, charger, meter) and its specs.

    Specs are columns, not a blob, so they can be validated and queried; each kind uses the
    ones that apply to it (see SPEC_FIELDS)."""

    code = models.CharField(max_length=32, unique=True, validators=[code_validator])
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="equipment")
    kind = models.CharField(max_length=20, choices=EquipmentKind.choices)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        help_text="The battery system a battery unit belongs to.",
    )
    name = models.CharField(max_length=200, blank=True)
    manufacturer = models.CharField(max_length=100, blank=True, default="ADS-TEC")
    model = models.CharField(max_length=100, blank=True)
    serial = models.CharField(max_length=100, blank=True)
    # Specifications
    capacity_kwh = models.FloatField(null=True, blank=True, validators=[positive])
    max_power_kw = models.FloatField(null=True, blank=True, validators=[positive])
    max_charge_kw = models.FloatField(null=True, blank=True, validators=[positive])
    max_discharge_kw = models.FloatField(null=True, blank=True, validators=[positive])
    soc_min_pct = models.FloatField(null=True, blank=True, validators=percent)
    soc_max_pct = models.FloatField(null=True, blank=True, validators=percent)
    voltage_v = models.FloatField(null=True, blank=True, validators=[positive])
    connector_types = models.JSONField(default=list, blank=True)
    connector_count = models.PositiveSmallIntegerField(null=True, blank=True)
    phases = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(3)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    SPEC_FIELDS = {
        EquipmentKind.BATTERY_SYSTEM: [
            "capacity_kwh",
            "max_power_kw",
            "max_charge_kw",
            "max_discharge_kw",
            "soc_min_pct",
            "soc_max_pct",
            "voltage_v",
        ],
        EquipmentKind.BATTERY_UNIT: [
            "capacity_kwh",
            "max_power_kw",
            "max_charge_kw",
            "max_discharge_kw",
            "soc_min_pct",
            "soc_max_pct",
            "voltage_v",
        ],
        EquipmentKind.CHARGER: ["max_power_kw", "connector_types", "connector_count", "voltage_v"],
        EquipmentKind.METER: ["max_power_kw", "voltage_v", "phases"],
    }

    class Meta:
        ordering = ["site__code", "kind", "code"]
        verbose_name_plural = "equipment"

    def __str__(self) -> str:
        return f"{self.code} ({self.get_kind_display()})"

    def specs(self) -> dict:
        """The specifications that apply to this kind and are set."""
        return {
            name: getattr(self, name)
            for name in self.SPEC_FIELDS.get(self.kind, [])
            if getattr(self, name) not in (None, [])
        }

    def clean(self) -> None:
        errors = upper_bound_errors(self)
        if (
            self.soc_min_pct is not None
            and self.soc_max_pct is not None
            and self.soc_min_pct >= self.soc_max_pct
        ):
            errors.setdefault("soc_min_pct", []).append("Must be below soc_max_pct.")
        for limit in ("max_charge_kw", "max_discharge_kw"):
            value = getattr(self, limit)
            if value is not None and self.max_power_kw is not None and value > self.max_power_kw:
                errors.setdefault(limit, []).append("Must not exceed max_power_kw.")
        if self.kind == EquipmentKind.BATTERY_UNIT:
            if self.parent_id is None:
                errors.setdefault("parent", []).append("A battery unit needs its battery system.")
            elif self.parent.kind != EquipmentKind.BATTERY_SYSTEM:
                errors.setdefault("parent", []).append("The parent must be a battery system.")
        elif self.parent_id is not None:
            errors.setdefault("parent", []).append("Only battery units have a parent.")
        if self.parent_id is not None and self.site_id and self.parent.site_id != self.site_id:
            errors.setdefault("parent", []).append("The parent must be at the same site.")
        if self.kind == EquipmentKind.BATTERY_SYSTEM and self.site_id:
            others = Equipment.objects.filter(site_id=self.site_id, kind=self.kind)
            if others.exclude(pk=self.pk).exists():
                errors.setdefault("kind", []).append("A site has at most one battery system.")
        valid_connectors = set(ConnectorType.values)
        if not isinstance(self.connector_types, list) or any(
            c not in valid_connectors for c in self.connector_types
        ):
            errors.setdefault("connector_types", []).append(
                "Must be a list of: " + ", ".join(sorted(valid_connectors)) + "."
            )
        not_applicable = [
            name
            for name in {f for fields in self.SPEC_FIELDS.values() for f in fields}
            if name not in self.SPEC_FIELDS.get(self.kind, [])
            and getattr(self, name) not in (None, [])
        ]
        for name in not_applicable:
            errors.setdefault(name, []).append(f"Does not apply to a {self.kind}.")
        if errors:
            raise ValidationError(errors)


# Every specification column, in display order (the union of Equipment.SPEC_FIELDS).
SPEC_FIELD_NAMES = list(
    dict.fromkeys(name for fields in Equipment.SPEC_FIELDS.values() for name in fields)
)


class Controller(models.Model):
    """A site gateway running Amperio; it reaches only its own site's resources."""

    code = models.CharField(max_length=32, unique=True, validators=[code_validator])
    serial = models.CharField(max_length=100, unique=True)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="controllers")
    model = models.CharField(max_length=100, default="Amperio-GW")
    state = models.CharField(
        max_length=16, choices=ControllerState.choices, default=ControllerState.PENDING
    )
    firmware_version = models.CharField(max_length=40, blank=True)
    assets = models.ManyToManyField(Equipment, blank=True, related_name="controllers")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.serial})"
