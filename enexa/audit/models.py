"""The audit log: one row per API call, with the objects a write changed; never a secret."""

from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    """One /v1/ call: who, from where, what, the outcome, and for writes the objects changed."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    principal = models.CharField(
        max_length=200, db_index=True, help_text="controller:CTRL001, user:alice or anonymous"
    )
    source_ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    query = models.CharField(
        max_length=1000, blank=True, help_text="The query string, secret-looking values masked."
    )
    status_code = models.PositiveSmallIntegerField(db_index=True)
    changes = models.JSONField(
        default=list,
        blank=True,
        help_text='Objects a write changed: [{"model", "id", "action"}].',
    )
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return (
            f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.principal} {self.method} "
            f"{self.path} {self.status_code}"
        )
