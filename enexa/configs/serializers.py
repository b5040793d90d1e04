"""Response shapes of the configuration API (the documents themselves are validated by the
services, which know the equipment limits)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import ConfigVersion
from .schema import modbus_units


@extend_schema_field(modbus_units(nullable=False))
class ModbusField(serializers.JSONField):
    """`modbus`: one ChargePost's address (an object) or several (a list)."""


class ConfigSerializer(serializers.Serializer):
    """`{"version", "settings", "limits"}`: a controller's effective configuration."""

    version = serializers.IntegerField()
    settings = serializers.DictField()
    limits = serializers.DictField()


class VersionPollSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class ConfigStateSerializer(serializers.Serializer):
    """Current against applied version: `drift` when the gateway runs another one."""

    controller_id = serializers.CharField()
    version = serializers.IntegerField()
    updated_at = serializers.DateTimeField()
    applied_version = serializers.IntegerField(allow_null=True)
    applied_at = serializers.DateTimeField(allow_null=True)
    drift = serializers.BooleanField()


class ConfigVersionSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="number")

    class Meta:
        model = ConfigVersion
        fields = ["version", "created_at", "created_by", "reason"]
        read_only_fields = fields


class ConfigVersionDetailSerializer(ConfigVersionSerializer):
    class Meta(ConfigVersionSerializer.Meta):
        fields = [*ConfigVersionSerializer.Meta.fields, "settings", "limits"]
        read_only_fields = fields


class SiteConfigDocumentSerializer(serializers.Serializer):
    """`{"site_id", "revision", "updated_at", "battery": {...}, "grid": {...}, ...}`."""

    site_id = serializers.CharField()
    revision = serializers.IntegerField()
    updated_at = serializers.DateTimeField()
    battery = serializers.DictField()
    grid = serializers.DictField()
    watchdog = serializers.DictField()
    telemetry = serializers.DictField()
    status = serializers.DictField()
    autonomy = serializers.DictField()
    modbus = ModbusField(required=False)
    config_poll_interval_s = serializers.IntegerField()
    setpoint_validity_s = serializers.IntegerField()
