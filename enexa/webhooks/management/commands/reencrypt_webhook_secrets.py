"""`manage.py reencrypt_webhook_secrets`: encrypt every webhook signing secret anew under the
first key of ENEXA_SECRETS_KEY, the step of a key rotation (docs/operations.md)."""

from django.core.management.base import BaseCommand, CommandError

from enexa.webhooks.services import reencrypt_secrets


class Command(BaseCommand):
    help = (
        "Re-encrypt every webhook signing secret under the first key of ENEXA_SECRETS_KEY "
        "(decrypting with any listed key). Exits non-zero, naming the endpoints, when some "
        "secret no listed key decrypts: keep the old key listed until it succeeds."
    )

    def handle(self, *args, **options):
        done, undecryptable = reencrypt_secrets()
        self.stdout.write(f"re-encrypted {done} webhook secrets under the first key")
        if undecryptable:
            raise CommandError(
                f"no key of ENEXA_SECRETS_KEY decrypts the secret of {len(undecryptable)} "
                f"webhooks: {', '.join(undecryptable)}"
            )
