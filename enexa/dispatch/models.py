"""A command for a site, as Enexa sent it to Amperio, and its latest known status."""

from django.db import models

from enexa.registry.models import Site

from .choices import CommandStatus


class Command(models.Model):
    """One dispatch; `command_id` is the idempotency key Amperio also keys on."""

    command_id = models.CharField(max_length=64, unique=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="commands")
    command = models.CharField(max_length=40)
    params = models.JSONField(default=dict)
    issued_at = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=CommandStatus.choices, default=CommandStatus.UNDELIVERED
    )
    detail = models.TextField(blank=True)
    registers = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=150)
    delivery_attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["site", "status"])]

    def __str__(self) -> str:
        return f"{self.command_id} {self.command} @ {self.site.code} ({self.status})"
