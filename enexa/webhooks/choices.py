"""Enumerations of webhooks: the event types one may subscribe to, a delivery's status."""

from django.db import models

EVENT_TYPES = (
    "alert.opened",
    "alert.resolved",
    "command.updated",
    "site.online",
    "site.offline",
    "plan.created",
    "plan.released",
)


class DeliveryStatus(models.TextChoices):
    # Waiting for its first or next attempt (next_attempt_at says when).
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    # Every attempt failed (or the endpoint was disabled): kept, retried only by hand.
    DEAD = "dead", "Dead letter"
