"""Enumerations of alerts: an alert's state and severity."""

from django.db import models


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    # Seen by someone: kept (not reopened, not duplicated) until the condition clears.
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"

    @classmethod
    def unresolved(cls) -> list[str]:
        return [cls.OPEN, cls.ACKNOWLEDGED]


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
