"""Shapes of Amperio's API for the OpenAPI schema; the request is shared.dispatch's own (its
schema derived by shared.openapi), validation too."""

from rest_framework import serializers

from amperio.api.errors import PROBLEM_CONTENT_TYPE
from shared.dispatch import COMMANDS, STATUSES


class DispatchAcceptedSerializer(serializers.Serializer):
    command_id = serializers.CharField()
    status = serializers.ChoiceField(choices=STATUSES)


class DispatchStatusSerializer(serializers.Serializer):
    """`GET /v1/dispatch/{command_id}`: the command and what became of it."""

    command_id = serializers.CharField()
    site_id = serializers.CharField()
    command = serializers.ChoiceField(choices=COMMANDS)
    params = serializers.JSONField()
    timestamp = serializers.DateTimeField()
    valid_until = serializers.DateTimeField(allow_null=True)
    status = serializers.ChoiceField(choices=STATUSES)
    detail = serializers.CharField(help_text="Why it was rejected, failed or expired.")
    registers = serializers.DictField(help_text="Register values written, as read back.")
    received_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    lease_until = serializers.DateTimeField(
        allow_null=True, help_text="Until when the setpoint is re-asserted."
    )


class ModbusHealthSerializer(serializers.Serializer):
    link_up = serializers.BooleanField()
    last_read_at = serializers.DateTimeField(allow_null=True)


class WatchdogHealthSerializer(serializers.Serializer):
    last_beat_at = serializers.DateTimeField(allow_null=True)
    beating = serializers.BooleanField(help_text="A beat within the hardware's timeout.")
    withheld = serializers.CharField(
        allow_null=True, help_text="Why the gateway stopped beating, while it does."
    )


class BufferHealthSerializer(serializers.Serializer):
    """The outbox: what waits to be sent to Enexa."""

    depth = serializers.IntegerField(help_text="Readings and events waiting.")
    readings = serializers.IntegerField()
    events = serializers.IntegerField()
    readings_added = serializers.IntegerField(required=False)
    dead_letter = serializers.IntegerField(required=False)
    oldest_at = serializers.DateTimeField(required=False, allow_null=True)


class CommandsHealthSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Commands not yet finished.")


class SiteHealthSerializer(serializers.Serializer):
    """One site's gateway."""

    modbus = ModbusHealthSerializer()
    watchdog = WatchdogHealthSerializer()
    buffer = BufferHealthSerializer()
    mode = serializers.CharField()
    autonomy = serializers.CharField(
        help_text="normal, schedule (following the last schedule) or safe_local while Enexa "
        "is away."
    )
    config_version = serializers.IntegerField(allow_null=True)
    firmware_version = serializers.CharField(allow_null=True)
    commands = CommandsHealthSerializer()


class EnexaHealthSerializer(serializers.Serializer):
    reachable = serializers.BooleanField()
    last_ok_at = serializers.DateTimeField(allow_null=True)


class HealthSerializer(serializers.Serializer):
    """`GET /v1/health`: per site Modbus link, watchdog, buffer and mode; Enexa reachability."""

    status = serializers.ChoiceField(choices=("ok", "degraded"))
    sites = serializers.DictField(child=SiteHealthSerializer(), help_text="By site id.")
    enexa = EnexaHealthSerializer()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


def problems(*codes: int) -> dict:
    """`extend_schema` responses: a problem document (application/problem+json) per code."""
    return {(code, PROBLEM_CONTENT_TYPE): ProblemSerializer for code in codes}
