"""Model signals feeding the audit log the objects a request creates, updates or deletes."""

from django.db.models.signals import post_delete, post_save

from .services import note_change


def on_save(sender, instance, created, raw=False, **kwargs):
    if not raw:
        note_change(instance, "created" if created else "updated")


def on_delete(sender, instance, **kwargs):
    note_change(instance, "deleted")


def connect() -> None:
    post_save.connect(on_save, dispatch_uid="audit-post-save")
    post_delete.connect(on_delete, dispatch_uid="audit-post-delete")
