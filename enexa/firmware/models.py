"""Firmware releases of the controller models and the reports controllers send about updates."""

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from enexa.registry.models import Controller, Site

from . import semver
from .choices import Channel, ReportStatus

sha256_validator = RegexValidator(r"^[0-9a-f]{64}$", "Must be 64 lower-case hex digits.")


def validate_semver(value: str) -> None:
    if not semver.is_valid(value):
        raise ValidationError(f"'{value}' is not a semantic version (e.g. 2.1.0).")


class FirmwareRelease(models.Model):
    """A firmware image for one controller model; offered once published, never once yanked."""

    # What identifies a registered release and its image: never changed afterwards (a new
    # image is a new version), by the API nor the admin.
    IMMUTABLE_FIELDS = ("version", "controller_model", "url", "sha256", "size_bytes")

    version = models.CharField(max_length=64, validators=[validate_semver])
    controller_model = models.CharField(max_length=100, default="Amperio-GW")
    url = models.URLField(max_length=500)
    sha256 = models.CharField(max_length=64, validators=[sha256_validator])
    size_bytes = models.PositiveBigIntegerField()
    notes = models.TextField(blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.STABLE)
    published = models.BooleanField(default=False)
    yanked = models.BooleanField(default=False)
    target_sites = models.ManyToManyField(
        Site,
        blank=True,
        related_name="firmware_releases",
        help_text="Offered only at these sites while set; empty means every site.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["controller_model", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["controller_model", "version"], name="unique_firmware_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.controller_model} {self.version} ({self.channel})"

    @property
    def parsed_version(self) -> semver.Version:
        return semver.Version(self.version)


class FirmwareReport(models.Model):
    """What a controller reported about its firmware: the version it runs and the update step."""

    controller = models.ForeignKey(
        Controller, on_delete=models.CASCADE, related_name="firmware_reports"
    )
    current_version = models.CharField(max_length=64, validators=[validate_semver])
    status = models.CharField(max_length=16, choices=ReportStatus.choices)
    target_version = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    # The gateway's idempotency key: a replayed report is stored once.
    message_id = models.CharField(max_length=64, blank=True)
    reported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-reported_at", "-pk"]
        indexes = [models.Index(fields=["controller", "-reported_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["controller", "message_id"],
                condition=~models.Q(message_id=""),
                name="unique_firmware_report_message",
            )
        ]

    def __str__(self) -> str:
        return f"{self.controller.code} {self.current_version} {self.status}"


class ControllerFirmware(Controller):
    """The controllers seen from the firmware side (admin: who runs outdated firmware)."""

    class Meta:
        proxy = True
        verbose_name = "controller firmware"
        verbose_name_plural = "controller firmware"
