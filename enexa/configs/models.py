"""Site configuration, controller overrides, immutable config versions and applied-version state.

The shape of the documents and how they merge is described in `enexa.configs.services`."""

from django.db import models

from enexa.registry.models import Controller, Site


class SiteConfig(models.Model):
    """A site's settings: a sparse JSON document over the defaults (validated by the services)."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="config")
    settings = models.JSONField(default=dict, blank=True)
    # Grows on every change; the site document's ETag, so a stale PUT answers 412.
    revision = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name = "site configuration"

    def __str__(self) -> str:
        return f"{self.site.code} configuration (revision {self.revision})"


class ControllerConfig(models.Model):
    """A controller's overrides: a sparse JSON document over its site's settings."""

    controller = models.OneToOneField(Controller, on_delete=models.CASCADE, related_name="config")
    overrides = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name = "controller configuration override"

    def __str__(self) -> str:
        return f"{self.controller.code} overrides"


class ConfigVersion(models.Model):
    """One immutable version of a controller's effective configuration (settings and limits)."""

    controller = models.ForeignKey(
        Controller, on_delete=models.CASCADE, related_name="config_versions"
    )
    number = models.PositiveIntegerField()
    settings = models.JSONField()
    limits = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["controller", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["controller", "number"], name="unique_config_version")
        ]

    def __str__(self) -> str:
        return f"{self.controller.code} v{self.number}"

    def save(self, *args, **kwargs):
        # Versions are history: a change is a new version, never an edit of an old one.
        if self.pk is not None:
            raise ValueError("A configuration version is immutable.")
        super().save(*args, **kwargs)


class ConfigState(models.Model):
    """Per controller: the current version (the cheap poll reads only this row) and the version
    the gateway reports as applied, so drift between the two shows up."""

    controller = models.OneToOneField(
        Controller, on_delete=models.CASCADE, primary_key=True, related_name="config_state"
    )
    version = models.PositiveIntegerField()
    updated_at = models.DateTimeField()
    applied_version = models.PositiveIntegerField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "configuration state"

    def __str__(self) -> str:
        return f"{self.controller.code}: v{self.version} (applied {self.applied_version})"

    @property
    def drift(self) -> bool:
        """The gateway has not (yet) applied the current version."""
        return self.applied_version != self.version
