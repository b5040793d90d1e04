"""Request and response shapes of dispatch (the command itself is validated by shared.dispatch)."""

from rest_framework import serializers

from shared.dispatch import COMMANDS

from .models import Command


class IssueCommandSerializer(serializers.Serializer):
    command = serializers.ChoiceField(choices=COMMANDS)
    params = serializers.DictField()
    valid_until = serializers.DateTimeField(required=False)
    command_id = serializers.CharField(required=False, max_length=64)


class CommandSerializer(serializers.ModelSerializer):
    site_id = serializers.CharField(source="site.code", read_only=True)

    class Meta:
        model = Command
        fields = [
            "command_id",
            "site_id",
            "command",
            "params",
            "issued_at",
            "valid_until",
            "status",
            "detail",
            "registers",
            "created_by",
            "delivery_attempts",
            "delivered_at",
            "updated_at",
        ]
        read_only_fields = fields
