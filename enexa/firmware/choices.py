"""Enumerations of the firmware catalogue."""

from django.db import models


class Channel(models.TextChoices):
    STABLE = "stable", "Stable"
    BETA = "beta", "Beta"


class ReportStatus(models.TextChoices):
    OK = "ok", "OK"
    DOWNLOADING = "downloading", "Downloading"
    INSTALLING = "installing", "Installing"
    FAILED = "failed", "Failed"


class RolloutState(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded (runs the release)"
    AHEAD = "ahead", "Runs a newer version"
    IN_PROGRESS = "in_progress", "Downloading or installing"
    FAILED = "failed", "Failed"
    PENDING = "pending", "Not started or not yet back on the new version"
