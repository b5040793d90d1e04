"""Configuration changes that re-plan a controlled site (reason `config`)."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from enexa.configs.models import ConfigVersion, SiteConfig

from . import services
from .choices import PlanReason


@receiver(post_save, sender=SiteConfig, dispatch_uid="optimizer_site_config_saved")
def site_config_saved(sender, instance, raw=False, **kwargs):
    # The site's settings (battery band, grid limit, tariff) are what the optimizer reads.
    if not raw:
        services.request_replan(instance.site, PlanReason.CONFIG)


@receiver(post_save, sender=ConfigVersion, dispatch_uid="optimizer_config_version_saved")
def config_version_saved(sender, instance, created, raw=False, **kwargs):
    # A new version also follows equipment changes (the limits): the battery itself changed.
    # Several in one transaction re-plan once: the task skips a site planned since.
    if created and not raw and instance.number > 1:
        services.request_replan(instance.controller.site, PlanReason.CONFIG)
