"""Django settings of Amperio's API: no database models, values from the environment."""

import os
import secrets
from pathlib import Path

from amperio.settings import get_settings
from shared.logs import logging_config

_gateway = get_settings()

# Nothing is signed with it that must outlive the process (no sessions, no cookies).
SECRET_KEY = os.environ.get("AMPERIO_API_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("AMPERIO_API_DEBUG", "0") == "1"
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("AMPERIO_API_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]
MIDDLEWARE = [
    # First: the request id on every log line of the call (the refused ones too).
    "amperio.api.middleware.RequestIdMiddleware",
    # Then: refuses callers outside the allowlist, and audits every call, refused ones too.
    "amperio.api.middleware.GuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The API docs' files (Swagger UI, Redoc) from gunicorn itself, found in the installed
    # packages: a gateway has no collectstatic step and no web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "amperio.api.urls"
WSGI_APPLICATION = "amperio.api.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
# The command table (amperio.dispatch.store.CommandStore) is the store; Django keeps nothing.
DATABASES: dict = {}
STATIC_URL = "static/"
WHITENOISE_USE_FINDERS = True
USE_TZ = True
TIME_ZONE = "UTC"
APPEND_SLASH = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["amperio.api.auth.ServiceTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["amperio.api.auth.IsService"],
    "DEFAULT_THROTTLE_CLASSES": ["amperio.api.throttling.CallerRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["amperio.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "amperio.api.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Amperio middleware API",
    "DESCRIPTION": "Dispatch commands to a site's ChargePost units and read the gateway's "
    "health; see docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/v1",
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "ENUM_NAME_OVERRIDES": {
        "CommandStatusEnum": "shared.dispatch.STATUSES",
        "CommandEnum": "shared.dispatch.COMMANDS",
    },
    # The wire format of the dispatch request as shared/ defines it.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "shared.openapi.add_components",
    ],
    # Swagger UI and Redoc from drf-spectacular-sidecar, not a CDN: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = logging_config(_gateway.log_format, _gateway.log_level)
