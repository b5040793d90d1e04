"""Request and response shapes of the firmware catalogue and controllers' reports."""

from rest_framework import serializers

from enexa.registry.models import Controller, Site

from .choices import ReportStatus
from .models import FirmwareRelease, FirmwareReport


class FirmwareReleaseSerializer(serializers.ModelSerializer):
    target_sites = serializers.SlugRelatedField(
        slug_field="code",
        many=True,
        queryset=Site.objects.all(),
        required=False,
        help_text="Site ids; empty means every site.",
    )

    class Meta:
        model = FirmwareRelease
        fields = [
            "version",
            "controller_model",
            "url",
            "sha256",
            "size_bytes",
            "notes",
            "channel",
            "published",
            "yanked",
            "target_sites",
            "created_at",
            "created_by",
            "updated_at",
        ]
        read_only_fields = ["created_at", "created_by", "updated_at"]
        validators: list = []  # a duplicate (model, version) is a 409 from the service


class FirmwareReleaseUpdateSerializer(FirmwareReleaseSerializer):
    """What may change once a release is registered: not its version nor its image."""

    class Meta(FirmwareReleaseSerializer.Meta):
        read_only_fields = [
            *FirmwareReleaseSerializer.Meta.read_only_fields,
            *FirmwareRelease.IMMUTABLE_FIELDS,
        ]


class LatestFirmwareSerializer(serializers.ModelSerializer):
    """`{"version", "url", "sha256"}` as the contract has it, with the size and notes."""

    class Meta:
        model = FirmwareRelease
        fields = ["version", "url", "sha256", "size_bytes", "channel", "notes"]
        read_only_fields = fields


RUNNING_VERSION_MAX_LENGTH = Controller._meta.get_field("firmware_version").max_length


class FirmwareReportSerializer(serializers.ModelSerializer):
    controller_id = serializers.CharField(source="controller.code", read_only=True)
    status = serializers.ChoiceField(choices=ReportStatus.choices)

    class Meta:
        model = FirmwareReport
        fields = [
            "controller_id",
            "current_version",
            "status",
            "target_version",
            "error",
            "message_id",
            "reported_at",
        ]
        read_only_fields = ["controller_id", "reported_at"]
        extra_kwargs = {
            # It becomes the version the controller runs: no longer than the controller keeps.
            "current_version": {"max_length": RUNNING_VERSION_MAX_LENGTH},
            "message_id": {"required": False},
            "error": {"required": False},
            "target_version": {"required": False},
        }
        validators: list = []


class RolloutControllerSerializer(serializers.Serializer):
    id = serializers.CharField()
    site_id = serializers.CharField()
    current_version = serializers.CharField(allow_null=True)
    state = serializers.CharField()
    last_status = serializers.CharField(allow_null=True)
    last_reported_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()


class RolloutSerializer(serializers.Serializer):
    version = serializers.CharField()
    controller_model = serializers.CharField()
    channel = serializers.CharField()
    published = serializers.BooleanField()
    yanked = serializers.BooleanField()
    target_sites = serializers.ListField(child=serializers.CharField())
    counts = serializers.DictField(child=serializers.IntegerField())
    controllers = RolloutControllerSerializer(many=True)


class OutdatedControllerSerializer(serializers.Serializer):
    id = serializers.CharField()
    site_id = serializers.CharField()
    model = serializers.CharField()
    current_version = serializers.CharField(allow_null=True)
    latest_version = serializers.CharField()
