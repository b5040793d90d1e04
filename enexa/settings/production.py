"""Production profile: refuses to start on development defaults; HTTPS-only settings."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import (
    ALLOWED_HOSTS,
    DATABASE_URL,
    DEFAULT_DATABASE_URL,
    ENEXA_RATE_LIMITS,
    REDIS_URL,
    SECRET_KEY_FROM_ENV,
    SECRETS_KEY_FROM_ENV,
)
from .env import env_bool, env_int, env_list

DEBUG = False

_missing = []
if not SECRET_KEY_FROM_ENV or len(SECRET_KEY_FROM_ENV) < 50:
    _missing.append("SECRET_KEY (at least 50 characters)")
# Not derived from SECRET_KEY here: a key of its own is rotated on its own schedule, and
# changing SECRET_KEY (sessions, JWTs) must not leave every webhook secret undecryptable.
if not SECRETS_KEY_FROM_ENV:
    _missing.append("ENEXA_SECRETS_KEY (one or more Fernet keys, comma-separated)")
if DATABASE_URL == DEFAULT_DATABASE_URL:
    _missing.append("DATABASE_URL")
if not env_list("ALLOWED_HOSTS"):
    _missing.append("ALLOWED_HOSTS")
# Without Redis each gunicorn worker counts alone, so every limit would be multiplied by the
# number of workers.
if any(ENEXA_RATE_LIMITS.values()) and not REDIS_URL:
    _missing.append("REDIS_URL (rate limits are counted per process without it)")
if env_bool("DEBUG", False):
    _missing.append("DEBUG must be off")
if _missing:
    raise ImproperlyConfigured(
        "Production settings refuse development defaults; set: " + ", ".join(_missing)
    )

ALLOWED_HOSTS = ALLOWED_HOSTS
SECURE_SSL_REDIRECT = env_bool("ENEXA_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env_int("ENEXA_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# Local probes (monitoring, the load balancer) reach gunicorn over plain HTTP on 127.0.0.1.
SECURE_REDIRECT_EXEMPT = [r"^v1/health/?$"]
