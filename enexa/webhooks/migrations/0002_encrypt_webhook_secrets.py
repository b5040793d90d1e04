"""Webhook signing secrets encrypted at rest: the column becomes `encrypted_secret`, a Fernet
token under ENEXA_SECRETS_KEY, and every stored plaintext secret is encrypted. The reverse
decrypts them (it needs a key that encrypted them) and restores the plaintext column."""

from django.db import migrations, models

from enexa.core.encryption import UndecryptableSecret, decrypt, encrypt

PLAINTEXT_PREFIX = "whsec_"  # noqa: S105 - how a plaintext secret starts; a Fernet token never does


def encrypt_secrets(apps, schema_editor):
    Webhook = apps.get_model("webhooks", "Webhook")
    for pk, stored in list(Webhook.objects.values_list("pk", "encrypted_secret")):
        if stored.startswith(PLAINTEXT_PREFIX):  # so a re-run after a failure skips the done
            Webhook.objects.filter(pk=pk).update(encrypted_secret=encrypt(stored))


def decrypt_secrets(apps, schema_editor):
    Webhook = apps.get_model("webhooks", "Webhook")
    rows = Webhook.objects.values_list("pk", "code", "encrypted_secret")
    undecryptable = []
    for pk, code, stored in list(rows):
        if stored.startswith(PLAINTEXT_PREFIX):
            continue
        try:
            Webhook.objects.filter(pk=pk).update(encrypted_secret=decrypt(stored))
        except UndecryptableSecret:
            undecryptable.append(code)
    if undecryptable:
        # Nothing is half done: the migration's transaction rolls back.
        raise RuntimeError(
            "Cannot unapply: no key of ENEXA_SECRETS_KEY decrypts the signing secret of the "
            f"webhooks {', '.join(undecryptable)}; list the key that encrypted them."
        )


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0001_initial")]

    operations = [
        migrations.RenameField("webhook", "secret", "encrypted_secret"),
        migrations.AlterField("webhook", "encrypted_secret", models.TextField()),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
    ]
