"""Request and response shapes of webhooks: the subscription a client sends (the parser the
property tests exercise), the endpoint as shown (never its secret, but once), deliveries and
their attempts."""

import json

from rest_framework import serializers

from .choices import EVENT_TYPES
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
