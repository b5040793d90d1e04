"""URL configuration: the /v1/ API (namespace v1), its schema and docs, the admin, the
operator dashboard under /app/ (namespace dashboard), and /metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from enexa.api.metrics import metrics
from enexa.api.views import health, unlisted

v1_patterns = [
    path("auth/token", TokenObtainPairView.as_view(), name="token"),
    path("auth/token/refresh", TokenRefreshView.as_view(), name="token-refresh"),
    path("health", health, name="health"),
    # Monitors and people add the slash; the docs below need it (Django's APPEND_SLASH
    # redirects /v1/docs there).
    path("health/", unlisted(health)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="v1:schema"), name="docs"),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="v1:schema", template_name="enexa_api/redoc.html"),
        name="redoc",
    ),
    path("", include("enexa.registry.urls")),
    path("", include("enexa.provisioning.urls")),
    path("", include("enexa.configs.urls")),
    path("", include("enexa.firmware.urls")),
    path("", include("enexa.telemetry.urls")),
    path("", include("enexa.dispatch.urls")),
    path("", include("enexa.alerts.urls")),
    path("", include("enexa.webhooks.urls")),
    path("", include("enexa.optimizer.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    # Prometheus scrapes it at the top level, as on Amperio (bearer token when configured).
    path("metrics", metrics, name="metrics"),
    path("app/", include(("enexa.dashboard.urls", "dashboard"), namespace="dashboard")),
    path("v1/", include((v1_patterns, "v1"), namespace="v1")),
]

handler404 = "enexa.api.errors.not_found_view"
handler500 = "enexa.api.errors.server_error_view"
