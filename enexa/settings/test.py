"""Test profile: fast password hashing; the test database name can be set per worker."""
from .base import *  # noqa: F403
from .base import DATABASES
from .env import env_str

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
_test_name = env_str("ENEXA_TEST_DB_NAME")
if _test_name:
    DATABASES["default"]["TEST"] = {"NAME": _test_name}

# No rate limits in the in-process tests unless a test sets them (tests/enexa/test_throttling.py):
# many tests post large batches from one principal within a minute.
ENEXA_RATE_LIMITS = {scope: None for scope in ("controller", "user", "anon", "login", "register")}
