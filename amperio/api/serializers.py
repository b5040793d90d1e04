"""Shapes of Amperio's API for the OpenAPI schema; validation itself is shared.dispatch's."""

from rest_framework import serializers

from shared.dispatch import COMMANDS, STATUSES


class DispatchRequestSerializer(serializers.Serializer):
    """`POST /v1/dispatch` as documented; the body is parsed by `DispatchCommand.from_dict`."""

    site_id = serializers.CharField(help_text="e.g. SITE001")
    command = serializers.ChoiceField(choices=COMMANDS)
    params = serializers.JSONField(
        help_text="set_battery_power: power_kw (+ discharge, - charge), optional unit_id; "
        "set_charger_power_limit: charger_id, limit_kw; set_grid_limit: limit_kw; "
        "set_mode: mode (auto, manual, safe); apply_schedule: slots [{start, end, power_kw}]"
    )
    timestamp = serializers.DateTimeField()
    command_id = serializers.CharField(
        required=False, help_text="Idempotency key (or the Idempotency-Key header)."
    )
    valid_until = serializers.DateTimeField(
        required=False, help_text="The setpoint holds (is re-asserted) until then."
    )


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


class HealthSerializer(serializers.Serializer):
    """`GET /v1/health`: per site Modbus link, watchdog, buffer and mode; Enexa reachability."""

    status = serializers.ChoiceField(choices=("ok", "degraded"))
    sites = serializers.DictField(child=serializers.JSONField())
    enexa = serializers.JSONField()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )
