"""Wire shapes of the registry: sites, controllers and equipment with specs (codes as `id`)."""

import copy

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from enexa.core.visibility import scope_to_caller

from .choices import ConnectorType
from .models import SPEC_FIELD_NAMES, UPPER_BOUNDS, Controller, Equipment, Site, code_validator
from .services import foreign_assets, next_controller_code


class ScopedCodeField(serializers.SlugRelatedField):
    """A reference by code, resolvable only within the sites the caller may see."""

    def __init__(self, site_field: str, **kwargs):
        self.site_field = site_field
        super().__init__(slug_field="code", **kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        request = self.context.get("request")
        if request is None:
            return queryset
        return scope_to_caller(queryset, request.user, self.site_field)


class ModelCleanSerializer(serializers.ModelSerializer):
    """Runs the model's full_clean() on the would-be object, so the rules live once (in the
    model) and break as 400 field errors named as on the wire, not as 500s."""

    # Model field -> wire field, for the error keys.
    wire_names: dict[str, str] = {}
    # Model fields fixed at creation (identity and ownership).
    create_only: tuple[str, ...] = ()

    def validate(self, attrs):
        attrs = super().validate(attrs)
        model = self.Meta.model
        many_to_many = {field.name for field in model._meta.many_to_many}
        errors: dict[str, list[str]] = {}
        if self.instance is not None:
            for name in self.create_only:
                if name in attrs and attrs[name] != getattr(self.instance, name):
                    errors[self.wire_names.get(name, name)] = ["Cannot be changed."]
            if errors:
                raise serializers.ValidationError(errors)
        candidate = copy.copy(self.instance) if self.instance is not None else model()
        for name, value in attrs.items():
            if name not in many_to_many:
                setattr(candidate, name, value)
        try:
            candidate.full_clean()
        except DjangoValidationError as exc:
            for name, messages in exc.message_dict.items():
                key = "non_field_errors" if name == NON_FIELD_ERRORS else name
                errors.setdefault(self.wire_names.get(key, key), []).extend(messages)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class SiteSerializer(ModelCleanSerializer):
    """A site: where ChargePost equipment runs behind one grid connection."""

    id = serializers.CharField(
        source="code",
        validators=[code_validator],
        max_length=32,
        help_text="The site's code, e.g. SITE001; fixed at creation.",
    )

    wire_names = {"code": "id"}
    create_only = ("code",)

    class Meta:
        model = Site
        fields = [
            "id",
            "name",
            "timezone",
            "address",
            "latitude",
            "longitude",
            "grid_connection_limit_kw",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class EquipmentSpecsSerializer(serializers.ModelSerializer):
    """The specifications of a piece of equipment; only those of its kind that are set are
    shown (GET /v1/equipment/{asset_id}/specs)."""

    connector_types = serializers.ListField(
        child=serializers.ChoiceField(choices=ConnectorType.choices), required=False
    )

    class Meta:
        model = Equipment
        fields = SPEC_FIELD_NAMES
        extra_kwargs = {name: {"required": False} for name in SPEC_FIELD_NAMES}
        # The bound, not the column's range: that differs between SQLite and PostgreSQL, and
        # the published schema must not depend on the database.
        extra_kwargs["connector_count"]["max_value"] = UPPER_BOUNDS["connector_count"]

    def to_representation(self, instance):
        return instance.specs()


class EquipmentSerializer(ModelCleanSerializer):
    """A piece of equipment (battery system or unit, charger, meter) with its specs."""

    id = serializers.CharField(
        source="code",
        validators=[code_validator],
        max_length=32,
        help_text="The asset's code, e.g. BAT1; fixed at creation.",
    )
    site_id = ScopedCodeField(
        source="site",
        site_field="",
        queryset=Site.objects.all(),
        help_text="The site's code; fixed at creation.",
    )
    parent_id = ScopedCodeField(
        source="parent",
        site_field="site",
        queryset=Equipment.objects.all(),
        required=False,
        allow_null=True,
        help_text="The battery system a battery unit belongs to.",
    )
    specs = EquipmentSpecsSerializer(source="*", required=False)

    wire_names = {
        "code": "id",
        "site": "site_id",
        "parent": "parent_id",
        **{name: f"specs.{name}" for name in SPEC_FIELD_NAMES},
    }
    create_only = ("code", "site", "kind")

    class Meta:
        model = Equipment
        fields = [
            "id",
            "site_id",
            "kind",
            "parent_id",
            "name",
            "manufacturer",
            "model",
            "serial",
            "specs",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class BatterySerializer(EquipmentSerializer):
    """The battery system of a site with its units."""

    units = serializers.SerializerMethodField()

    class Meta(EquipmentSerializer.Meta):
        fields = [*EquipmentSerializer.Meta.fields, "units"]

    @extend_schema_field(EquipmentSerializer(many=True))
    def get_units(self, system: Equipment):
        return EquipmentSerializer(system.children.all(), many=True, context=self.context).data


class SiteEquipmentSerializer(serializers.Serializer):
    """GET /v1/sites/{site_id}/equipment: the site's equipment grouped by kind."""

    battery = BatterySerializer(allow_null=True, read_only=True)
    chargers = EquipmentSerializer(many=True, read_only=True)
    meters = EquipmentSerializer(many=True, read_only=True)


class ControllerSerializer(ModelCleanSerializer):
    """A site gateway and the assets it drives; staff pre-register it by serial."""

    id = serializers.CharField(
        source="code",
        validators=[code_validator],
        max_length=32,
        required=False,
        help_text="The controller's code, e.g. CTRL001; the next free one when left out.",
    )
    site_id = ScopedCodeField(
        source="site",
        site_field="",
        queryset=Site.objects.all(),
        help_text="The site's code; fixed at creation.",
    )
    assets = ScopedCodeField(
        many=True,
        site_field="site",
        queryset=Equipment.objects.all(),
        required=False,
        help_text="Codes of the site's equipment this controller drives.",
    )

    wire_names = {"code": "id", "site": "site_id"}
    create_only = ("code", "site", "serial")

    class Meta:
        model = Controller
        fields = [
            "id",
            "site_id",
            "serial",
            "model",
            "state",
            "firmware_version",
            "assets",
            "created_at",
            "updated_at",
        ]
        # The lifecycle state and the firmware version are the system's to change
        # (provisioning, suspension, the gateway's own reports), never a client's.
        read_only_fields = ["state", "firmware_version", "created_at", "updated_at"]

    def validate(self, attrs):
        if self.instance is None and not attrs.get("code"):
            attrs["code"] = next_controller_code()
        attrs = super().validate(attrs)
        site = attrs.get("site") or getattr(self.instance, "site", None)
        assets = attrs.get("assets")
        if site is not None and assets is not None:
            foreign = foreign_assets(site, assets)
            if foreign:
                raise serializers.ValidationError(
                    {"assets": [f"Not equipment of {site.code}: {', '.join(foreign)}."]}
                )
        return attrs
