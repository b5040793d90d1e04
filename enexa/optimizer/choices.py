"""Enumerations of the optimizer."""

from django.db import models


class PlanReason(models.TextChoices):
    """Why a plan was made (the contract's `reason`)."""

    MANUAL = "manual", "Asked for (API or admin)"
    SCHEDULED = "scheduled", "Periodic re-plan"
    SOC_DRIFT = "soc_drift", "Measured SOC drifted from the plan"
    PRICES = "prices", "Prices changed"
    CONFIG = "config", "Site configuration or equipment changed"
    RECONNECT = "reconnect", "Site back after an outage"


class PlanStatus(models.TextChoices):
    """What the solver answered; never infeasible (soft limits become violations)."""

    OPTIMAL = "optimal", "Optimal"
    FEASIBLE_WITH_VIOLATIONS = "feasible_with_violations", "Feasible with violations"
