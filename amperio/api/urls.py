"""URLs of Amperio's API: /v1/dispatch, /v1/health, the OpenAPI schema and its two docs pages."""

from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from amperio.api import views

v1_patterns = [
    path("dispatch", views.DispatchView.as_view(), name="dispatch"),
    path("dispatch/<str:command_id>", views.DispatchStatusView.as_view(), name="dispatch-status"),
    path("health", views.HealthView.as_view(), name="health"),
    path("health/", views.unlisted(views.HealthView.as_view())),  # monitors add the slash
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="v1:schema"), name="docs"),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="v1:schema", template_name="amperio_api/redoc.html"),
        name="redoc",
    ),
]
# APPEND_SLASH is off here: the docs pages people type without the slash get a redirect.
v1_patterns += [
    path(name, RedirectView.as_view(url=f"/v1/{name}/", query_string=True))
    for name in ("schema", "docs", "redoc")
]

urlpatterns = [
    path("v1/", include((v1_patterns, "v1"), namespace="v1")),
    # Prometheus scrapes it at the top level, as on Enexa (bearer token when configured).
    path("metrics", views.MetricsView.as_view(), name="metrics"),
]

handler404 = "amperio.api.errors.not_found_view"
handler500 = "amperio.api.errors.server_error_view"
