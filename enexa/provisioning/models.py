"""Controller credentials: API keys, site enrollment secrets, and per-controller access rules."""

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from enexa.registry.models import Controller, Site


def cidr_networks(value) -> list[str]:
    """`value`, a list of networks in CIDR notation, normalised (192.0.2.7 -> 192.0.2.7/32);
    raises ValidationError for anything else."""
    if not isinstance(value, list):
        raise ValidationError("Must be a list of networks in CIDR notation (e.g. 203.0.113.0/24).")
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(str(item), strict=False)))
        except ValueError as exc:
            raise ValidationError(f"'{item}' is not a network in CIDR notation.") from exc
    return networks


def validate_cidr_list(value) -> None:
    cidr_networks(value)


class ApiKey(models.Model):
    """A controller's API key: only a SHA-256 of its random secret is kept, found by `lookup`."""

    controller = models.ForeignKey(Controller, on_delete=models.CASCADE, related_name="api_keys")
    lookup = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Set on rotation: the old key keeps working until then, so a gateway can switch over.
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"enx_{self.lookup}… ({self.controller.code})"


class EnrollmentToken(models.Model):
    """A site's enrollment secret: registers up to `uses_left` controllers until `expires_at`."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="enrollment_tokens")
    lookup = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    uses_left = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"enr_{self.lookup}… ({self.site.code})"

    def is_usable(self, now=None) -> bool:
        return self.uses_left > 0 and self.expires_at > (now or timezone.now())


class ControllerAccess(models.Model):
    """Per-controller access rules (IP allowlist) and the outcome of its activation."""

    controller = models.OneToOneField(Controller, on_delete=models.CASCADE, related_name="access")
    ip_allowlist = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_cidr_list],
        help_text="Networks (CIDR) the controller's key may be used from; empty allows any.",
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    activation_detail = models.TextField(
        blank=True, help_text="Why the last activation was refused (tests failed, ...)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "controller access"
        verbose_name_plural = "controller access"

    def __str__(self) -> str:
        return f"access of {self.controller.code}"


class ProvisionedController(Controller):
    """A controller as staff manage its lifecycle and keys in the admin (no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "controller lifecycle"
        verbose_name_plural = "controller lifecycle"
