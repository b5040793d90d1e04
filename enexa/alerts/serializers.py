"""Response shape of an alert (the contract's `{"id", "site_id", "rule", ...}`)."""

from rest_framework import serializers

from .models import Alert


class AlertSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="code", read_only=True)
    site_id = serializers.CharField(source="site.code", read_only=True, allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "site_id",
            "rule",
            "subject",
            "severity",
            "state",
            "opened_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "detail",
        ]
        read_only_fields = fields
