"""Request and response shapes of webhooks: the subscription and the bulk retry a client
sends (the parsers the property tests exercise), the endpoint as shown (never its secret, but
once), deliveries and their attempts."""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from shared.fields import read_timestamp

from .choices import EVENT_TYPES, DeliveryStatus
from .models import Webhook, WebhookAttempt, WebhookDelivery


class WebhookSubscriptionSerializer(serializers.Serializer):
    """`POST /v1/webhooks` (all of url and events) and `PATCH` (any of the fields)."""

    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), min_length=1, max_length=50
    )
    sites = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, max_length=1000
    )
    enabled = serializers.BooleanField(required=False)

    def validate_url(self, value: str) -> str:
        if value.split(":", 1)[0].lower() not in ("http", "https"):
            raise serializers.ValidationError("Must be an http or https URL.")
        return value


class WebhookSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="code", read_only=True)
    sites = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "sites", "enabled", "disabled_reason", "created_at"]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    """The endpoint at its creation, with the secret: its only reveal."""

    secret = serializers.SerializerMethodField()

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, obj: Webhook) -> str:
        return self.context["secret"]


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "status_code", "error", "duration_ms"]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="code", read_only=True)
    site_id = serializers.CharField(source="site.code", read_only=True, allow_null=True)
    payload = serializers.SerializerMethodField()
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_type",
            "site_id",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "delivered_at",
            "payload",
            "attempt_log",
        ]
        read_only_fields = fields

    def get_payload(self, obj: WebhookDelivery) -> dict:
        return json.loads(obj.body)


@extend_schema_field(OpenApiTypes.DATETIME)
class TimestampField(serializers.Field):
    """An RFC 3339 timestamp with an offset, read as every timestamp of the wire is."""

    def to_internal_value(self, data):
        value, message = read_timestamp(data)
        if message is not None:
            raise serializers.ValidationError(message)
        return value

    def to_representation(self, value):
        return value


class BulkRetrySerializer(serializers.Serializer):
    """`POST /v1/webhooks/{id}/deliveries/retry`: which deliveries, all optional (none: every
    dead letter of the endpoint). An unknown key is refused, not ignored: a misspelt `ids`
    must not widen the retry to every dead letter."""

    status = serializers.ChoiceField(
        choices=[DeliveryStatus.DEAD.value],
        default=DeliveryStatus.DEAD.value,
        help_text="Which deliveries are retried: `dead` (dead letters), the only value.",
    )
    ids = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        min_length=1,
        max_length=1000,
        help_text="Only these deliveries (each one of this endpoint).",
    )

    def get_fields(self):
        # `from` and `to` as in every range of the API; `from` is no Python name.
        return {
            **super().get_fields(),
            "from": TimestampField(required=False, help_text="Created at or after this time."),
            "to": TimestampField(required=False, help_text="Created before this time."),
        }

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            unknown = sorted(str(key) for key in self.initial_data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        if "from" in attrs and "to" in attrs and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"from": ["Must be before `to`."]})
        return attrs


class BulkRetriedSerializer(serializers.Serializer):
    retried = serializers.IntegerField(help_text="Dead letters queued for one more attempt.")
    skipped = serializers.IntegerField(
        help_text="Deliveries chosen by `ids`, `from` or `to` that are no dead letter (left so)."
    )
