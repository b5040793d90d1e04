"""A webhook endpoint (its URL, events, sites and signing secret), each message delivered to
it, and each attempt of that delivery."""

from django.conf import settings
from django.db import models

from enexa.registry.models import Site

from .choices import DeliveryStatus


class Webhook(models.Model):
    """An endpoint subscribed to event types of its owner's sites (all of them, or `sites`)."""

    code = models.CharField(max_length=32, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks"
    )
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    sites = models.ManyToManyField(Site, blank=True, related_name="webhooks")
    # The signing secret (`whsec_` + base64) as a Fernet token under ENEXA_SECRETS_KEY
    # (enexa.core.encryption): kept to sign (HMAC needs the secret itself) but useless in a
    # database dump without the key. Shown once at creation, never again (not in the API, the
    # admin or a log).
    encrypted_secret = models.TextField()
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    # Since when every attempt failed (None once one succeeds): too long, and it is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.code} {self.url}"


class WebhookDelivery(models.Model):
    """One message to one endpoint: its exact signed body, and where its delivery stands."""

    # The Standard Webhooks `webhook-id`, the same on every attempt (receivers dedupe on it).
    code = models.CharField(max_length=40, unique=True)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=40)
    site = models.ForeignKey(
        Site, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    body = models.TextField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.code} {self.event_type} -> {self.webhook.code} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: when, the answer's status code or the error, how long it took."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField()

    class Meta:
        ordering = ["delivery", "attempted_at", "pk"]

    def __str__(self) -> str:
        return f"{self.delivery.code} at {self.attempted_at}: {self.status_code or self.error}"
