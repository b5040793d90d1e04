"""Settings of the Enexa servers and manage.py runs that tests start: the dev profile with cheap
password stretching. One PBKDF2 hash at Django's 1,000,000 iterations costs 1-2 s of a loaded
core, and every login, failed login and seeded user pays it; the live tests are about the API,
not about the cost of guessing a password."""

from django.contrib.auth.hashers import PBKDF2PasswordHasher

from enexa.settings.dev import *  # noqa: F403


class CheapPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """The production algorithm with a test's iteration count."""

    iterations = 1000


PASSWORD_HASHERS = ["tests.integration.live_settings.CheapPBKDF2PasswordHasher"]
