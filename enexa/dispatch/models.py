"""A command for a site, as Enexa sent it to Amperio, its latest known status, and each
attempt to deliver it."""

from django.db import models

from enexa.registry.models import Site

from .choices import CommandStatus, DeliveryOutcome


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
    # The X-Request-ID of the request that issued it: sent with every delivery, so the
    # command can be followed through Amperio's API and the gateway's task in the logs.
    request_id = models.CharField(max_length=64, blank=True)
    delivery_attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["site", "status"])]

    def __str__(self) -> str:
        return f"{self.command_id} {self.command} @ {self.site.code} ({self.status})"


class DeliveryAttempt(models.Model):
    """One POST of a command to Amperio: when, what came of it, and why not when it failed."""

    command = models.ForeignKey(Command, on_delete=models.CASCADE, related_name="attempts")
    attempted_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=DeliveryOutcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["command", "attempted_at"]

    def __str__(self) -> str:
        return f"{self.command.command_id} at {self.attempted_at}: {self.outcome}"
