"""Enumerations of enexa.telemetry."""

from django.db import models


class TransitionReason(models.TextChoices):
    STATUS = "status", "Status report"
    TELEMETRY = "telemetry", "Telemetry"
    EVENT = "event", "Event"
    REPORTED = "reported", "Gateway reported offline"
    SILENCE = "silence", "Silence past the threshold"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class Resolution(models.TextChoices):
    RAW = "raw", "Raw"
    MINUTE = "1m", "1 minute"
    QUARTER = "15m", "15 minutes"
    HOUR = "1h", "1 hour"


RESOLUTION_SECONDS = {Resolution.MINUTE: 60, Resolution.QUARTER: 900, Resolution.HOUR: 3600}
