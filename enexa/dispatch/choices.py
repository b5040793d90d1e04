"""Enumerations of dispatch."""

from django.db import models


class CommandStatus(models.TextChoices):
    # Stored, not yet accepted by Amperio (it was unreachable): re-dispatched on reconnection.
    UNDELIVERED = "undelivered", "Undelivered"
    QUEUED = "queued", "Queued at Amperio"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"

    @classmethod
    def final(cls) -> set[str]:
        return {cls.APPLIED, cls.REJECTED, cls.FAILED, cls.EXPIRED}


class DeliveryOutcome(models.TextChoices):
    ACCEPTED = "accepted", "Accepted by Amperio"
    REJECTED = "rejected", "Rejected by Amperio"
    # Transient: Amperio did not answer, or answered 5xx / 429 (tried again with backoff).
    UNREACHABLE = "unreachable", "Amperio unreachable"
    UNAVAILABLE = "unavailable", "Amperio unavailable"
    # Amperio refused the service token (401): kept for the periodic redelivery, not retried.
    UNAUTHORIZED = "unauthorized", "Service token refused"
