"""Prices per site and time slot, and the plans (battery schedules) made from them."""

from django.db import models

from enexa.registry.models import Site

from .choices import PlanReason, PlanStatus


class PriceSlot(models.Model):
    """The import and export price (per kWh) of one site over [start, end)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="price_slots")
    start = models.DateTimeField()
    end = models.DateTimeField()
    import_price = models.FloatField()
    export_price = models.FloatField()
    currency = models.CharField(max_length=3)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "start"]
        constraints = [
            models.UniqueConstraint(fields=["site", "start"], name="unique_price_slot_start")
        ]

    def __str__(self) -> str:
        return f"{self.site_id} {self.start:%Y-%m-%d %H:%M} {self.import_price} {self.currency}"


class Plan(models.Model):
    """One solved schedule of a site: immutable once stored; a newer plan replaces it.

    `inputs` is the Problem solved (with the slot starts), `inputs_digest` its SHA-256, so a
    plan can be reproduced and two plans from the same inputs recognised."""

    code = models.CharField(max_length=40, unique=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="plans")
    version = models.PositiveIntegerField()  # per site, only grows
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)
    reason = models.CharField(max_length=16, choices=PlanReason.choices)
    status = models.CharField(max_length=32, choices=PlanStatus.choices)
    slot_minutes = models.PositiveSmallIntegerField()
    start_at = models.DateTimeField()  # the first slot's start
    end_at = models.DateTimeField()  # the last slot's end
    currency = models.CharField(max_length=3, blank=True)
    # [{"start", "end", "battery_power_kw", "soc_pct", "grid_import_kw", "grid_export_kw",
    #   "import_price", "export_price", "load_kw"}], in time order.
    slots = models.JSONField(default=list)
    cost_total = models.FloatField()
    cost_baseline = models.FloatField()
    # [{"kind", "start", "amount"}]
    violations = models.JSONField(default=list, blank=True)
    solve_ms = models.FloatField()
    dispatched = models.BooleanField(default=False)
    command_id = models.CharField(max_length=64, blank=True)
    inputs = models.JSONField(default=dict)
    inputs_digest = models.CharField(max_length=64)
    # Mean absolute error (kW) of the previous plan's load forecast over its slots that ended
    # before this plan was made (None when none had).
    previous_forecast_error_kw = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["site", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["site", "version"], name="unique_plan_version")
        ]
        indexes = [models.Index(fields=["site", "dispatched", "-created_at"], name="plan_in_force")]

    def __str__(self) -> str:
        return f"{self.code} v{self.version} @ {self.site_id} ({self.reason})"


class PlanRelease(models.Model):
    """The optimizer handing a site back to manual control (`DELETE .../plan`): no automatic
    re-plan of it until a plan newer than `plan_version` is dispatched. `command_id` is the
    `apply_schedule` that stopped the gateway following the released plan."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="plan_releases")
    # The site's newest plan version when it was released (under the site's lock, as plans
    # are stored): plans up to it are released, whatever their clocks said.
    plan_version = models.PositiveIntegerField()
    released_at = models.DateTimeField()
    released_by = models.CharField(max_length=150)
    command_id = models.CharField(max_length=64)

    class Meta:
        ordering = ["site", "-plan_version"]
        indexes = [models.Index(fields=["site", "-plan_version"], name="plan_release_newest")]

    def __str__(self) -> str:
        return f"{self.site_id} released {self.released_at:%Y-%m-%d %H:%M} by {self.released_by}"
