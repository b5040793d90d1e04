"""Request and response shapes of the planning endpoints (prices, plans), for validation of
the plan request and for the OpenAPI schema; prices are read by `schema.PriceSchedule`, which
collects every field error of a large body at once."""

from rest_framework import serializers

from shared.dispatch import MAX_SLOTS

from .choices import PlanReason, PlanStatus
from .problem import VIOLATION_KINDS
from .services import MAX_HORIZON_H, SLOT_MINUTES


class PriceSlotSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(help_text="1 minute to 24 hours after start.")
    import_price = serializers.FloatField(help_text="Per kWh bought, -100 to 100.")
    export_price = serializers.FloatField(help_text="Per kWh sold, -100 to 100.")


class PricesSerializer(serializers.Serializer):
    """A site's prices: a `PUT` replaces every stored slot overlapping its range."""

    currency = serializers.RegexField(r"^[A-Z]{3}$", help_text="ISO 4217, e.g. EUR.")
    slots = PriceSlotSerializer(many=True, help_text="At most 2976, none overlapping.")


class PlanRequestSerializer(serializers.Serializer):
    """`POST /v1/sites/{site_id}/plans`: every field optional."""

    horizon_h = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_HORIZON_H, help_text="Default 24."
    )
    slot_minutes = serializers.ChoiceField(
        choices=SLOT_MINUTES,
        required=False,
        help_text=f"Default 15; at most {MAX_SLOTS} slots in the horizon.",
    )
    dispatch = serializers.BooleanField(
        required=False,
        default=True,
        help_text="Send the plan to the site as an apply_schedule command (default true); "
        "false: a what-if, stored but never in force.",
    )


class PlanSlotSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    battery_power_kw = serializers.FloatField(help_text="+ discharge, - charge.")
    soc_pct = serializers.FloatField(help_text="Planned SOC at the slot's end.")
    grid_import_kw = serializers.FloatField()
    grid_export_kw = serializers.FloatField()
    import_price = serializers.FloatField()
    export_price = serializers.FloatField()
    load_kw = serializers.FloatField(help_text="The load forecast the plan was made for.")


class CostSerializer(serializers.Serializer):
    total = serializers.FloatField(help_text="Energy bought - sold + demand charge.")
    baseline = serializers.FloatField(help_text="The same without the battery.")
    savings = serializers.FloatField()


class ViolationSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="One of: " + ", ".join(VIOLATION_KINDS) + ".")
    start = serializers.DateTimeField(help_text="The slot's start.")
    amount = serializers.FloatField(help_text="kW or percentage points, by kind.")


class PlanSerializer(serializers.Serializer):
    """A plan: immutable; a newer one replaces it."""

    id = serializers.CharField()
    site_id = serializers.CharField()
    version = serializers.IntegerField(help_text="Per site, only grows.")
    created_at = serializers.DateTimeField()
    reason = serializers.ChoiceField(choices=PlanReason.choices)
    status = serializers.ChoiceField(choices=PlanStatus.choices)
    slot_minutes = serializers.IntegerField()
    currency = serializers.CharField(help_text="Of the stored prices; empty: tariff only.")
    slots = PlanSlotSerializer(many=True)
    cost = CostSerializer()
    violations = ViolationSerializer(many=True)
    solve_ms = serializers.FloatField()
    command_id = serializers.CharField(
        allow_null=True, help_text="The apply_schedule command that carried it, if dispatched."
    )
    dispatched = serializers.BooleanField()
    inputs_digest = serializers.CharField(help_text="SHA-256 of the inputs solved.")
    previous_forecast_error_kw = serializers.FloatField(
        allow_null=True,
        help_text="Mean absolute error of the previous plan's load forecast over its slots "
        "that had ended.",
    )


class PlanListSerializer(serializers.Serializer):
    plans = PlanSerializer(many=True)


class ActualSlotSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    planned_soc_pct = serializers.FloatField()
    measured_soc_pct = serializers.FloatField(
        allow_null=True, help_text="Of the slot's last reading."
    )
    planned_battery_power_kw = serializers.FloatField()
    measured_battery_power_kw = serializers.FloatField(allow_null=True, help_text="Average.")
    planned_grid_import_kw = serializers.FloatField()
    measured_grid_import_kw = serializers.FloatField(allow_null=True, help_text="Average.")
    readings = serializers.IntegerField()


class PlanActualSerializer(serializers.Serializer):
    """The plan in force, slot by slot, against the measurement (null: not measured yet)."""

    plan_id = serializers.CharField()
    site_id = serializers.CharField()
    slots = ActualSlotSerializer(many=True)


class PlanReleaseSerializer(serializers.Serializer):
    """`DELETE /v1/sites/{site_id}/plan`: the site handed back to manual control."""

    site_id = serializers.CharField()
    released_at = serializers.DateTimeField()
    released_by = serializers.CharField()
    command_id = serializers.CharField(
        help_text="The apply_schedule (one 0 kW slot) that stops the gateway following the plan."
    )
