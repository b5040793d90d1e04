"""Settings shared by every profile; each value can be set from the environment."""

import base64
import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from shared.logs import LOG_FORMATS, logging_config

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("ENEXA_VAR_DIR", str(BASE_DIR / "var")))


def _dev_secret_key() -> str:
    """A random key kept in var/ so development sessions survive restarts; never in the repo."""
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        # Processes started together (gunicorn's workers, the Celery worker, test workers) must
        # agree on one key, or the JWTs one signs are invalid at the others: each writes a
        # whole draft under another name and links it in place, which only the first can do
        # (nobody reads a half-written key); the others then read the first's.
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        draft = VAR_DIR / f".dev-secret-key-{secrets.token_hex(8)}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(50))
        try:
            path.hardlink_to(draft)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


SECRET_KEY_FROM_ENV = env_str("SECRET_KEY")
SECRET_KEY = SECRET_KEY_FROM_ENV or _dev_secret_key()


def _derived_secrets_key(secret_key: str) -> str:
    """A Fernet key derived from SECRET_KEY, for development, the tests and the demo (no set-up);
    production refuses to start without ENEXA_SECRETS_KEY (a key kept apart from the other)."""
    digest = hashlib.sha256(b"enexa.secrets-key\0" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


# Keys that encrypt the secrets Enexa keeps readable (webhook signing secrets) in the database
# (enexa.core.encryption): the first encrypts, every one decrypts, so a new key is put first
# and the old one removed once `manage.py reencrypt_webhook_secrets` has run.
SECRETS_KEY_FROM_ENV = env_list("ENEXA_SECRETS_KEY", [])
ENEXA_SECRETS_KEYS = SECRETS_KEY_FROM_ENV or [_derived_secrets_key(SECRET_KEY)]
for _number, _key in enumerate(ENEXA_SECRETS_KEYS, start=1):
    try:
        Fernet(_key)
    except ValueError:
        # Which key, never its value.
        raise ImproperlyConfigured(
            f"ENEXA_SECRETS_KEY: key {_number} is not a Fernet key (32 url-safe base64-encoded "
            "bytes, as Fernet.generate_key() makes)."
        ) from None
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "enexa.api",
    "enexa.registry",
    "enexa.provisioning",
    "enexa.configs",
    "enexa.firmware",
    "enexa.telemetry",
    "enexa.audit",
    "enexa.dispatch",
    "enexa.alerts",
    "enexa.webhooks",
    "enexa.optimizer",
    # The operator dashboard under /app/ (server-rendered; htmx for the live parts).
    "django_htmx",
    "enexa.dashboard",
]

MIDDLEWARE = [
    # First: every log line of the request, and the answer, carry its request id.
    "enexa.api.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from gunicorn itself (the demo, a server without nginx); in production nginx
    # answers /static/ before a request reaches it (infra/nginx/enexa.conf).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # request.htmx: the dashboard answers its polls with a fragment, not the whole page.
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "enexa.api.middleware.DatabaseUnavailableMiddleware",
    # A wrong method under /app/: the dashboard's 405 page instead of Django's empty one. After
    # those its page needs: request.user and request.htmx, then on the way out the CSRF cookie
    # of the page's token and X-Frame-Options, set on the page it made.
    "enexa.dashboard.middleware.MethodNotAllowedPageMiddleware",
    "enexa.audit.middleware.AuditMiddleware",
    "enexa.api.middleware.RejectHostileInputMiddleware",
]

ROOT_URLCONF = "enexa.urls"
WSGI_APPLICATION = "enexa.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DEFAULT_DATABASE_URL = f"sqlite:///{VAR_DIR / 'enexa.sqlite3'}"
DATABASE_URL = env_str("DATABASE_URL", DEFAULT_DATABASE_URL)
# Persistent connections: measured here, CONN_MAX_AGE=0 costs about 3x on the ingest endpoint.
# Health checks cost a `SELECT 1` round trip on every request; without them a connection the
# database dropped fails one request with a 503 (Retry-After) and is then replaced.
# psycopg prepares a statement of a server-binding cursor after this many runs; only
# enexa.core.sql uses such cursors, and it asks for preparation at once.
PREPARE_AFTER = 1_000_000
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("ENEXA_CONN_MAX_AGE", 60),
        conn_health_checks=env_bool("ENEXA_CONN_HEALTH_CHECKS", False),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "ENEXA_DB_PREPARED_STATEMENTS", True
):
    # enexa.core.sql prepares the hot path's statements (prepare=True), which psycopg ignores
    # while a connection's prepare_threshold is None, Django's default. Django's own cursors
    # bind on the client and never prepare, so only those statements are prepared (planning
    # was about 60 % of PostgreSQL's work for a single reading). Off behind a pooler in
    # transaction mode that does not track prepared statements (PgBouncer before 1.21).
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = PREPARE_AFTER
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets readers run beside the writer; IMMEDIATE avoids "database is locked" upgrades.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The largest request body accepted (bytes); a larger one answers 413 on /v1/. The default
# (Django's 2.5 MiB) holds a batch of 1,000 full readings several times over.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("ENEXA_MAX_BODY_BYTES", 2_621_440)

STATIC_URL = "static/"

# The dashboard's login (Django's auth views under /app/, the same users as the API).
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:fleet"
LOGOUT_REDIRECT_URL = "dashboard:login"
# A form posted with a stale or missing CSRF token: the dashboard's own 403 under /app/.
CSRF_FAILURE_VIEW = "enexa.urls.csrf_failure"
# `manage.py collectstatic` copies the admin's and the API docs' files here (the demo does it
# at start, infra/systemd/enexa.service before each start).
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise also serves the apps' own static files (the dashboard's stylesheet, htmx, uPlot)
# where collectstatic has not run (a test server, a development server with DEBUG=0).
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    # House style: the controller API-key class runs first and claims only its own prefix;
    # JWTs go to simplejwt after it; anything else is 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "enexa.api.authentication.ApiKeyAuthentication",
        "enexa.api.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "enexa.api.pagination.EnvelopePagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "enexa.api.schema.ProblemAutoSchema",
    "EXCEPTION_HANDLER": "enexa.api.errors.problem_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with the nesting depth bounded (enexa.api.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "enexa.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": None,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(hours=1),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("ENEXA_REFRESH_TOKEN_DAYS", 7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Enexa platform API",
    "DESCRIPTION": "Asset registry, configuration, firmware, provisioning and telemetry of the "
    "Enexa energy platform; see docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The wire formats (telemetry, events, status, dispatch) as shared/ defines them.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "shared.openapi.add_components",
    ],
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files, not a CDN: the docs
    # work offline and show the version pinned in pyproject.toml.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Where Enexa reaches the Amperio middleware's API, and the service token it presents there.
ENEXA_AMPERIO_URL = env_str("ENEXA_AMPERIO_URL", "http://127.0.0.1:8100").rstrip("/")
ENEXA_AMPERIO_TOKEN = env_str("ENEXA_AMPERIO_TOKEN")
ENEXA_AMPERIO_TIMEOUT_S = float(env_str("ENEXA_AMPERIO_TIMEOUT_S", "5"))

# Enexa's Celery broker (delivery to Amperio, periodic work). Not CELERY_BROKER_URL: that names
# Amperio's broker. Unset: an embedded broker in <ENEXA_VAR_DIR>/broker (dev and the demo).
ENEXA_CELERY_BROKER_URL = env_str("ENEXA_CELERY_BROKER_URL")
# A delivery that fails transiently (Amperio unreachable, 5xx, 429) is retried this many times,
# after about ENEXA_DELIVERY_BACKOFF_S * 2**n seconds (with jitter, at most
# ENEXA_DELIVERY_BACKOFF_MAX_S, never sooner than Amperio's Retry-After); then the periodic
# redelivery takes it over.
ENEXA_DELIVERY_MAX_RETRIES = env_int("ENEXA_DELIVERY_MAX_RETRIES", 5)
ENEXA_DELIVERY_BACKOFF_S = float(env_str("ENEXA_DELIVERY_BACKOFF_S", "2"))
ENEXA_DELIVERY_BACKOFF_MAX_S = float(env_str("ENEXA_DELIVERY_BACKOFF_MAX_S", "300"))

# The optimizer (enexa.optimizer, docs/configuration.md): the horizon and slot of a plan not
# asking for others; how often controlled sites are re-planned, and how often (and how far, in
# SOC points) the measurement is checked against the plan in force; the cost per kWh through
# the battery that keeps it from churning for nothing; the round-trip efficiency (the registry
# has none); how many weeks of telemetry the load forecast reads.
ENEXA_OPTIMIZER_HORIZON_H = env_int("ENEXA_OPTIMIZER_HORIZON_H", 24)
ENEXA_OPTIMIZER_SLOT_MINUTES = env_int("ENEXA_OPTIMIZER_SLOT_MINUTES", 15)
ENEXA_OPTIMIZER_REPLAN_INTERVAL_S = float(env_str("ENEXA_OPTIMIZER_REPLAN_INTERVAL_S", "900"))
ENEXA_OPTIMIZER_DRIFT_CHECK_S = float(env_str("ENEXA_OPTIMIZER_DRIFT_CHECK_S", "60"))
ENEXA_OPTIMIZER_SOC_DRIFT_PCT = float(env_str("ENEXA_OPTIMIZER_SOC_DRIFT_PCT", "5"))
ENEXA_OPTIMIZER_CYCLE_COST_PER_KWH = float(env_str("ENEXA_OPTIMIZER_CYCLE_COST_PER_KWH", "0.001"))
ENEXA_OPTIMIZER_ROUND_TRIP_EFFICIENCY = float(
    env_str("ENEXA_OPTIMIZER_ROUND_TRIP_EFFICIENCY", "0.9")
)
ENEXA_OPTIMIZER_FORECAST_WEEKS = env_int("ENEXA_OPTIMIZER_FORECAST_WEEKS", 4)
# Plans are kept this long after their horizon ends (each site's newest always).
ENEXA_OPTIMIZER_PLAN_RETENTION_DAYS = env_int("ENEXA_OPTIMIZER_PLAN_RETENTION_DAYS", 14)

# Redis, where set, counts rate limits atomically across processes (enexa.api.throttling).
REDIS_URL = env_str("REDIS_URL")

# Logs: `plain` lines or one JSON object per line (`json`); every record carries the request
# id (X-Request-ID, accepted from the caller or made here) that Enexa passes on to Amperio.
ENEXA_LOG_FORMAT = env_str("ENEXA_LOG_FORMAT", "plain")
if ENEXA_LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(f"ENEXA_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}.")
LOGGING = logging_config(ENEXA_LOG_FORMAT, env_str("ENEXA_LOG_LEVEL", "INFO"))
LOGGING["loggers"] = {"django.db.backends": {"level": "WARNING"}}

# GET /metrics: open when empty, else only with `Authorization: Bearer <this>`.
ENEXA_METRICS_TOKEN = env_str("ENEXA_METRICS_TOKEN", "")

# Provisioning: how long a rotated-out API key keeps working, and an enrollment secret's
# default lifetime.
ENEXA_API_KEY_ROTATION_GRACE_S = env_int("ENEXA_API_KEY_ROTATION_GRACE_S", 86400)
ENEXA_ENROLLMENT_TTL_S = env_int("ENEXA_ENROLLMENT_TTL_S", 7 * 86400)

# Reverse proxies whose X-Forwarded-For is believed (IPs or CIDRs); anyone else's is ignored.
TRUSTED_PROXIES = env_list("ENEXA_TRUSTED_PROXIES", [])

# Rate limits per principal and scope ("count/unit", unit s, min, hour or day; None = no limit).
# Controllers are keyed by controller, users by user, the rest by client address; a batch
# counts its items. `auth_failure` counts failed authentications (a bad API key or JWT) per
# client address: beyond it every request presenting credentials from there answers 429.
# ENEXA_RATE_LIMITS="controller=100/min,login=5/min" overrides some.
ENEXA_RATE_LIMITS = {
    "controller": "6000/min",
    "user": "1200/min",
    "anon": "120/min",
    "login": "20/min",
    "register": "10/min",
    "auth_failure": "30/min",
}
for _item in env_list("ENEXA_RATE_LIMITS", []):
    _scope, _, _rate = _item.partition("=")
    ENEXA_RATE_LIMITS[_scope.strip()] = _rate.strip() if _rate.strip() not in ("", "none") else None
ENEXA_RATE_LIMIT_PREFIX = env_str("ENEXA_RATE_LIMIT_PREFIX", "enexa:ratelimit")
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["enexa.api.throttling.PrincipalRateThrottle"]

# Telemetry (enexa.telemetry): batch bound, silence before a site shows offline, the reading
# interval outage reports expect, powers accepted up to this multiple of the site's ratings,
# and retention of raw readings and of their hourly aggregates.
ENEXA_TELEMETRY_MAX_BATCH = env_int("ENEXA_TELEMETRY_MAX_BATCH", 1000)
# A gateway's POST /v1/telemetry answered before the middleware chain and DRF
# (enexa.telemetry.fastpath); off, it takes the same way as every other call.
ENEXA_INGEST_FAST_PATH = env_bool("ENEXA_INGEST_FAST_PATH", True)
ENEXA_OFFLINE_AFTER_S = env_int("ENEXA_OFFLINE_AFTER_S", 120)
ENEXA_TELEMETRY_INTERVAL_S = float(env_str("ENEXA_TELEMETRY_INTERVAL_S", "5"))
ENEXA_TELEMETRY_POWER_FACTOR = float(env_str("ENEXA_TELEMETRY_POWER_FACTOR", "3"))
ENEXA_TELEMETRY_RAW_RETENTION_DAYS = env_int("ENEXA_TELEMETRY_RAW_RETENTION_DAYS", 30)
ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS = env_int("ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS", 730)
ENEXA_TELEMETRY_MAX_POINTS = env_int("ENEXA_TELEMETRY_MAX_POINTS", 10000)

# How long audit entries are kept (`manage.py prune_audit_log` deletes older ones).
ENEXA_AUDIT_RETENTION_DAYS = env_int("ENEXA_AUDIT_RETENTION_DAYS", 365)

# Alerts (enexa.alerts.rules): the thresholds of the rules the worker evaluates every 30 s.
# An online gateway whose outbox holds this many readings is degraded (it cannot send).
ENEXA_ALERT_BUFFER_DEPTH_MAX = env_int("ENEXA_ALERT_BUFFER_DEPTH_MAX", 1000)
# A failed, rejected or expired command keeps its site's alert open this long.
ENEXA_ALERT_COMMAND_WINDOW_S = env_int("ENEXA_ALERT_COMMAND_WINDOW_S", 3600)
# SOC outside the site's band by more than this (percentage points) opens an alert.
ENEXA_ALERT_SOC_MARGIN_PCT = float(env_str("ENEXA_ALERT_SOC_MARGIN_PCT", "1"))
# Grid import above grid.limit_kw for this long opens an alert.
ENEXA_ALERT_GRID_OVER_LIMIT_S = env_int("ENEXA_ALERT_GRID_OVER_LIMIT_S", 300)
# A controller that has not applied its current configuration version for this long drifts.
ENEXA_ALERT_CONFIG_DRIFT_S = env_int("ENEXA_ALERT_CONFIG_DRIFT_S", 900)
# An online site without a reading for this long has a telemetry gap.
ENEXA_ALERT_TELEMETRY_GAP_S = env_int("ENEXA_ALERT_TELEMETRY_GAP_S", 300)
# The gateway rules read Amperio's polled health (every 30 s) while it is this fresh (three
# polls); older, Amperio was unreachable and they read the gateway's own reports instead.
ENEXA_ALERT_HEALTH_FRESH_S = env_int("ENEXA_ALERT_HEALTH_FRESH_S", 90)

# Webhooks (enexa.webhooks): targets on loopback, private or link-local addresses are refused
# (at creation and, after resolving the name again, at each send) unless this is on (the
# development profile turns it on).
ENEXA_WEBHOOK_ALLOW_PRIVATE = env_bool("ENEXA_WEBHOOK_ALLOW_PRIVATE", False)
# Connect and read timeout of one attempt: a slow receiver holds one worker thread this long.
ENEXA_WEBHOOK_TIMEOUT_S = float(env_str("ENEXA_WEBHOOK_TIMEOUT_S", "5"))
# Seconds from each failed attempt to the next (each with +-20 % jitter); after the last, the
# delivery is a dead letter. The default spans about a day (5 s ... 10 h, 8 attempts).
ENEXA_WEBHOOK_RETRY_SCHEDULE_S = env_list(
    "ENEXA_WEBHOOK_RETRY_SCHEDULE_S", ["5", "300", "1800", "7200", "18000", "36000", "36000"]
)
# Waits up to this long ride on the task's countdown; longer ones on the 30 s sweep.
ENEXA_WEBHOOK_COUNTDOWN_MAX_S = float(env_str("ENEXA_WEBHOOK_COUNTDOWN_MAX_S", "60"))
# An endpoint whose every attempt failed for this long is disabled, with an alert.
ENEXA_WEBHOOK_DISABLE_AFTER_S = env_int("ENEXA_WEBHOOK_DISABLE_AFTER_S", 86400)
