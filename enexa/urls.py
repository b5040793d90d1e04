"""URL configuration: the /v1/ API (namespace v1), its schema and docs, the admin, the
operator dashboard under /app/ (namespace dashboard), and /metrics; the error views, each area
answering in its own way (problem details under /v1/, the dashboard's pages under /app/,
Django's pages elsewhere, the admin's included)."""

from django.contrib import admin
from django.urls import include, path
from django.views import csrf, defaults
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from enexa.api.errors import not_found_view
from enexa.api.metrics import metrics
from enexa.api.views import health, unlisted
from enexa.dashboard import views as dashboard_views

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


def page_not_found(request, exception=None):
    """handler404: the dashboard's page (or fragment) under /app/, as before elsewhere."""
    if dashboard_views.in_dashboard(request):
        return dashboard_views.error_response(request, 404)
    return not_found_view(request, exception)


def permission_denied(request, exception=None):
    """handler403: the dashboard's page (or fragment) under /app/, Django's elsewhere (the
    API answers its own 403s as problem details before this is reached)."""
    if dashboard_views.in_dashboard(request):
        return dashboard_views.error_response(request, 403)
    return defaults.permission_denied(request, exception)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: a dashboard form posted with a stale or missing token gets the
    dashboard's 403 (the reason stays in the log, not on the page); Django's page elsewhere."""
    if dashboard_views.in_dashboard(request):
        return dashboard_views.error_response(request, 403, dashboard_views.CSRF_REFUSED)
    return csrf.csrf_failure(request, reason)


handler403 = permission_denied
handler404 = page_not_found
handler500 = "enexa.api.errors.server_error_view"
