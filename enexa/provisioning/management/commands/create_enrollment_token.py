"""`manage.py create_enrollment_token SITE001`: print a new enrollment secret (shown once)."""

from django.core.management.base import BaseCommand, CommandError

from enexa.provisioning.services import create_enrollment_token
from enexa.registry.models import Site


class Command(BaseCommand):
    help = "Create an enrollment secret for a site and print it (the only time it is shown)."

    def add_arguments(self, parser):
        parser.add_argument("site_id", help="The site's code, e.g. SITE001.")
        parser.add_argument("--uses", type=int, default=1, help="Registrations it allows.")
        parser.add_argument(
            "--ttl",
            type=int,
            default=None,
            help="Lifetime in seconds (default ENEXA_ENROLLMENT_TTL_S).",
        )

    def handle(self, *args, site_id: str, uses: int, ttl: int | None, **options):
        site = Site.objects.filter(code=site_id).first()
        if site is None:
            raise CommandError(f"No site {site_id}.")
        token, secret = create_enrollment_token(site, uses=uses, ttl_s=ttl)
        self.stderr.write(
            f"Enrollment secret for {site.code}: {token.uses_left} use(s), "
            f"expires {token.expires_at.isoformat()}."
        )
        # Only the secret on stdout, so scripts can capture it.
        self.stdout.write(secret)
