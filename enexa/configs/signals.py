"""Registry changes that alter configuration: a new controller's version 1, new limits."""

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from enexa.registry.models import Controller, Equipment, Site

from . import services


@receiver(post_save, sender=Controller, dispatch_uid="configs_controller_created")
def controller_saved(sender, instance, created, raw=False, **kwargs):
    # Version 1 at creation, so that the version poll never has to write.
    if created and not raw:
        services.ensure_initial_version(instance)


@receiver(post_save, sender=Equipment, dispatch_uid="configs_equipment_saved")
@receiver(post_delete, sender=Equipment, dispatch_uid="configs_equipment_deleted")
def equipment_changed(sender, instance, raw=False, **kwargs):
    if not raw:
        services.sync_site_versions(instance.site_id, reason=f"equipment {instance.code} changed")


@receiver(post_save, sender=Site, dispatch_uid="configs_site_saved")
def site_saved(sender, instance, created, raw=False, **kwargs):
    # The grid connection limit is a limit; a new site has no controllers yet.
    if not created and not raw:
        services.sync_site_versions(instance.pk, reason="site changed")


@receiver(m2m_changed, sender=Controller.assets.through, dispatch_uid="configs_assets_changed")
def assets_changed(sender, instance, action, **kwargs):
    # Which equipment a controller runs decides its limits.
    if action in ("post_add", "post_remove", "post_clear"):
        services.sync_site_versions(instance.site_id, reason="controller assets changed")
