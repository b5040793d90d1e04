"""Remove `tariff` from stored site and controller documents: the setting is no longer accepted
(nothing read it), and a document still holding it would fail every later validation."""

from django.db import migrations

RETIRED = ("tariff",)


def drop_retired(apps, schema_editor):
    for model, field in (("SiteConfig", "settings"), ("ControllerConfig", "overrides")):
        Model = apps.get_model("configs", model)
        for row in Model.objects.all().iterator():
            doc = getattr(row, field) or {}
            if any(key in doc for key in RETIRED):
                setattr(row, field, {k: v for k, v in doc.items() if k not in RETIRED})
                row.save(update_fields=[field])


class Migration(migrations.Migration):
    dependencies = [("configs", "0001_initial")]

    operations = [migrations.RunPython(drop_retired, migrations.RunPython.noop)]
