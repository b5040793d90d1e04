"""URLs of Amperio's API: /v1/dispatch, /v1/health, the OpenAPI schema and docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from amperio.api import views

v1_patterns = [
    path("dispatch", views.DispatchView.as_view(), name="dispatch"),
    path("dispatch/<str:command_id>", views.DispatchStatusView.as_view(), name="dispatch-status"),
    path("health", views.HealthView.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="v1:schema"), name="docs"),
]

urlpatterns = [path("v1/", include((v1_patterns, "v1"), namespace="v1"))]

handler404 = "amperio.api.errors.not_found_view"
handler500 = "amperio.api.errors.server_error_view"
