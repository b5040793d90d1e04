"""An alert: a rule's condition that held for a site (or, without a site, for another
subject such as a webhook endpoint), from when it opened until it cleared."""

from django.db import models
from django.db.models import Q

from enexa.registry.models import Site

from .choices import AlertState, Severity

UNRESOLVED = Q(state__in=AlertState.unresolved())


class Alert(models.Model):
    """One occurrence of a rule's condition; at most one unresolved per (rule, site, subject)."""

    code = models.CharField(max_length=32, unique=True)
    site = models.ForeignKey(
        Site, on_delete=models.CASCADE, related_name="alerts", null=True, blank=True
    )
    rule = models.CharField(max_length=40)
    # What else the alert is about, when not the site as a whole (a webhook endpoint's id).
    subject = models.CharField(max_length=64, blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    detail = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            # No storm: a rule that keeps holding updates its one open alert. Two constraints,
            # since NULL sites never collide in a unique index.
            models.UniqueConstraint(
                fields=["rule", "site", "subject"],
                condition=UNRESOLVED & Q(site__isnull=False),
                name="one_unresolved_alert_per_rule_site",
            ),
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=UNRESOLVED & Q(site__isnull=True),
                name="one_unresolved_alert_per_rule_subject",
            ),
        ]
        indexes = [models.Index(fields=["state", "rule"]), models.Index(fields=["site", "state"])]

    def __str__(self) -> str:
        return f"{self.code} {self.rule} @ {self.site_id or self.subject} ({self.state})"
