"""Test profile: fast password hashing; the test database name can be set per worker."""

from .base import *  # noqa: F403
from .base import DATABASES
from .env import env_str

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
_test_name = env_str("ENEXA_TEST_DB_NAME")
if _test_name:
    DATABASES["default"]["TEST"] = {"NAME": _test_name}

# Tests post thousands of readings as one principal; the throttling tests set their own limits.
ENEXA_RATE_LIMITS = {scope: "1000000/min" for scope in ENEXA_RATE_LIMITS}  # noqa: F405

# Static files straight from the installed apps: tests never run collectstatic, and WhiteNoise
# would warn at every test client's start that STATIC_ROOT is missing.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# A test that commits (transaction=True) may enqueue: kombu's in-memory transport takes it and
# nothing runs it. Tests run task bodies themselves (no eager Celery); the worker's own
# integration test sets a real broker.
ENEXA_CELERY_BROKER_URL = env_str("ENEXA_CELERY_BROKER_URL", "memory://")
