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
