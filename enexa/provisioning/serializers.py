"""Request and response shapes of the provisioning endpoints."""

from django.conf import settings
from rest_framework import serializers

from enexa.registry.choices import ControllerState

from .services import STATE_TRANSITIONS

MAX_GRACE_S = 30 * 86400
MAX_ENROLLMENT_TTL_S = 90 * 86400


class RegisterRequestSerializer(serializers.Serializer):
    serial = serializers.CharField(max_length=100)
    site_id = serializers.CharField(max_length=32)


class RegisterResponseSerializer(serializers.Serializer):
    controller_id = serializers.CharField()
    api_key = serializers.CharField(help_text="Shown once; store it on the gateway.")
    config_url = serializers.URLField()


class AssetSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    model = serializers.CharField(allow_blank=True)
    serial = serializers.CharField(allow_blank=True)
    parent_id = serializers.CharField(allow_null=True)
    specs = serializers.DictField()


class InitialConfigSerializer(serializers.Serializer):
    config = serializers.DictField(help_text='{"version", "settings", "limits"}')
    assets = AssetSerializer(many=True)


class ActivateRequestSerializer(serializers.Serializer):
    status = serializers.CharField(max_length=40, help_text='"ready" when the gateway is set up.')
    tests_passed = serializers.BooleanField()
    detail = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why the gateway is not ready (kept when activation is refused).",
    )


class ActivateResponseSerializer(serializers.Serializer):
    activated = serializers.BooleanField()
    detail = serializers.CharField(required=False)


class EnrollmentTokenRequestSerializer(serializers.Serializer):
    uses = serializers.IntegerField(min_value=1, max_value=1000, default=1)
    ttl_s = serializers.IntegerField(
        min_value=60,
        max_value=MAX_ENROLLMENT_TTL_S,
        default=lambda: settings.ENEXA_ENROLLMENT_TTL_S,
    )


class EnrollmentTokenSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The secret's public prefix, for the admin and logs.")
    site_id = serializers.CharField()
    secret = serializers.CharField(help_text="Shown once.")
    expires_at = serializers.DateTimeField()
    uses_left = serializers.IntegerField()


class RotateRequestSerializer(serializers.Serializer):
    grace_s = serializers.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_S,
        required=False,
        help_text="How long the current key keeps working (default from settings).",
    )


class RotateResponseSerializer(serializers.Serializer):
    controller_id = serializers.CharField()
    api_key = serializers.CharField(help_text="Shown once.")
    previous_keys_expire_at = serializers.DateTimeField()


class RevokeResponseSerializer(serializers.Serializer):
    controller_id = serializers.CharField()
    revoked = serializers.IntegerField()


class ControllerStateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=[(s, ControllerState(s).label) for s in STATE_TRANSITIONS],
        help_text="suspended, active (resume), decommissioned, or pending (reset: the serial "
        "may register again).",
    )


class ControllerStateResponseSerializer(serializers.Serializer):
    id = serializers.CharField()
    state = serializers.CharField()


class ControllerAccessSerializer(serializers.Serializer):
    ip_allowlist = serializers.ListField(
        child=serializers.CharField(max_length=64),
        max_length=100,
        help_text="Networks (CIDR) the controller's key may be used from; empty allows any.",
    )

    def validate_ip_allowlist(self, value):
        """The networks normalised (the child fields already stripped them)."""
        from django.core.exceptions import ValidationError

        from .models import cidr_networks

        try:
            return cidr_networks(value)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
